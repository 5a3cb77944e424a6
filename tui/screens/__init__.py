"""The dashboard's screens: the main one, a service's, and the confirmation modal."""
