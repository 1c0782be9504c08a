"""Authentication (passwords, PINs, signed tokens) and role-based permissions."""
