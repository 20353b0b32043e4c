"""Client sessions: transaction and session state, statement classification, multiplexing decisions."""

