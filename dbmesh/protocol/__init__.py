"""Protocol state machines (fed bytes, no asyncio) for the MySQL and PostgreSQL wire protocols."""
