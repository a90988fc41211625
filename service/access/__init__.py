"""Who is asking (the frozen RequestContext) and what one request touched and decided (its RequestRecord)."""
