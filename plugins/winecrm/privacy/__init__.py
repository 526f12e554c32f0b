"""Personal data rights: erasure of one person everywhere the platform holds them (GDPR art. 17)."""


class ErasureError(RuntimeError):
    """The erasure was refused or could not finish; nothing was changed (rolled back)."""
