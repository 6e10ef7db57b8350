"""Contact forms: declared in the register, validated, encrypted, e-mailed, purged."""
