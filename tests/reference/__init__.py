"""A reference model of the session store and its queue for the differential state machines."""
