"""PostgreSQL protocol 3: message codecs, SCRAM/md5 authentication and the startup-phase state machines."""
