"""Members: the local member cache, tiers, the points and stored-value ledgers."""
