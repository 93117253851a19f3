"""loginetl: login events from SQS into PostgreSQL, with the PII pseudonymized."""

__version__ = "0.1.0"
