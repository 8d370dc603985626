"""Tools for rule authors, above the rules language: `explain` (why an alert was or was not paged), `cases` (rule
unit tests against recorded alerts) and `compare` (what a change of rules would change, replayed on stored
alerts). Unlike `bridge.rules`, these may use the receivers (to parse a recorded payload) and the store.
"""
