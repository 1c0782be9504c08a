"""The HQ console: the chain's back office in the browser at `/hq/ui` (docs/hq-console.md).

Server-rendered Jinja pages in Simplified Chinese (default) and English, our own CSS and script, SVG
charts, a cookie session on HQ tokens, CSRF on every form, a strict CSP. It reuses the tablet's
machinery (`edge/ui`: i18n, charts, live streams, page headers, form reader, macros, app.js/app.css)
and calls the same service functions as the API with the user's `Principal`, so roles and region
scope are enforced once, in `hq_sync/server/service`.

One module per page in `pages/` lists its handlers in `ROUTES`; `router.py` mounts them.
"""
