"""The eXosip-style user agent: calls (cid), dialogs (did), transactions (tid)."""
