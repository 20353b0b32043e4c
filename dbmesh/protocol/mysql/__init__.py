"""MySQL/MariaDB protocol: constants, packet codecs, authentication and the connection-phase state machines."""
