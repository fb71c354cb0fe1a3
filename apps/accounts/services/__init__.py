"""Writes for accounts. Callers import from the module that holds the name: `api_keys`
(create, authenticate, revoke, forget cached keys), `limits` (a user's effective rates and
quota, cached) and `quota` (the monthly prediction quota: spend, refund, usage).
"""
