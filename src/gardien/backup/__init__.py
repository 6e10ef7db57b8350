"""Encrypted backups and the erasure journal that keeps erased people erased across a restore."""
