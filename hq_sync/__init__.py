"""HQ sync: the wire protocol shared by hub and HQ, the store-side agent and the reference HQ."""
