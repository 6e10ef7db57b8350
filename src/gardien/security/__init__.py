"""Security: rate limits today; admin accounts, MFA, encryption and audit build on it."""
