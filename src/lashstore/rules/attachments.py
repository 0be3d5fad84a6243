"""Attachment rules: ids are content hashes; what an intent and a put must carry."""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from ..model.attachments import AttachmentIntent
from .validate import check_id, check_id_list, check_nonneg_int, check_optional_text, check_ref, check_text

__all__ = ["check_intent", "check_put", "check_ids"]


def check_intent(intent: Any) -> AttachmentIntent:
    if not isinstance(intent, AttachmentIntent):
        raise ValidationError(f"expected an AttachmentIntent, got {type(intent).__name__}")
    check_id(intent.attachment_id, "intent.attachment_id")
    check_id(intent.session_id, "intent.session_id")
    check_id(intent.canonical_uri, "intent.canonical_uri")
    check_nonneg_int(intent.intent_at_epoch_ms, "intent.intent_at_epoch_ms")
    return intent


def check_put(data: Any, media_type: Any, width: Any, height: Any, label: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError(f"attachment bytes must be bytes, got {type(data).__name__}")
    if type(media_type) is not str or "/" not in check_text(media_type, "media_type"):
        raise ValidationError(f"media_type must look like 'image/png', got {media_type!r}")
    check_nonneg_int(width, "width", optional=True)
    check_nonneg_int(height, "height", optional=True)
    check_optional_text(label, "label")
    return bytes(data)


def check_ids(ids: Any, what: str = "attachment_ids") -> list[str]:
    return check_id_list(ids, what)


def check_attachment_id(attachment_id: Any) -> str:
    check_ref(attachment_id, "attachment_id")
    return attachment_id
