"""msgspec Structs for every record the store interprets."""

from .attachments import *  # noqa: F401,F403
from .attachments import __all__ as _att_all
from .blobs import *  # noqa: F401,F403
from .blobs import __all__ as _blobs_all
from .effects import *  # noqa: F401,F403
from .effects import __all__ as _effects_all
from .host_events import *  # noqa: F401,F403
from .host_events import __all__ as _host_events_all
from .process import *  # noqa: F401,F403
from .process import __all__ as _process_all
from .queue import *  # noqa: F401,F403
from .queue import __all__ as _queue_all
from .session import *  # noqa: F401,F403
from .session import __all__ as _session_all

__all__ = [*_att_all, *_blobs_all, *_effects_all, *_host_events_all, *_process_all, *_queue_all, *_session_all]
