"""Member engagement: referrals (a member brings a member) and campaigns (birthday, dormant, tier-up,
coupon-expiry notices into a notification outbox, delivered through channels). The rules are pure
modules (`referral_rules`, `campaign_rules`) that HQ and a standalone hub both run; `referrals`,
`campaigns` and `inbox` are the hub's SQLite side, `hq_sync/server/service/engage.py` HQ's."""
