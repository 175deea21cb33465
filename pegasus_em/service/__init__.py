"""pegasus-service: the multi-user HTTPS front, its process switching and the monitoring API."""
