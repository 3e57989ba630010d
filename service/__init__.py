"""The BentoML service of ukd-compress (see service.service)."""
