"""The HQ console: the chain's back office in the browser (`/hq/ui`)."""
