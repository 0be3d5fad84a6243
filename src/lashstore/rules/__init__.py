"""Pure decisions shared by every backend. No I/O: backends load rows, ask, and write the answer."""
