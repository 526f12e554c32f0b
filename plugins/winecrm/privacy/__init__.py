"""Personal data rights: erasure of one person everywhere the platform holds them (GDPR art. 17)."""
