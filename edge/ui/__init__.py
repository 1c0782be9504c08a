"""The store manager's tablet: server-rendered pages in Simplified Chinese and English.

One module per page in `edge/ui/pages/` lists its handlers in `ROUTES`; `edge/ui/router.py` mounts them.
"""
