"""Retention: every activity's data purged on the register's calendar, with receipts."""
