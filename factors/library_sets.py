"""Named factor sets of ``mine library --set``: the default library and WorldQuant Alpha101.

Kept apart from :mod:`factors.library` (which :mod:`factors.alpha101` imports for
:class:`~factors.library.NamedFactor`), so that neither imports the other back.
"""
from __future__ import annotations

from data.errors import ConfigError
from factors.alpha101 import ALPHA101
from factors.alpha101 import UNAVAILABLE as A101_UNAVAILABLE
from factors.library import LIBRARY, UNAVAILABLE, NamedFactor


#: Named factor sets of ``mine library --set``: ``default`` (:data:`LIBRARY`, references added
#: with the gate forced) and ``alpha101`` (:mod:`factors.alpha101`, gated like any candidate).
LIBRARY_SETS: tuple[str, ...] = ("default", "alpha101")


def library_set(name: str) -> tuple[tuple[NamedFactor, ...], dict[str, str]]:
    """The factors of a named set and the ones it cannot build (name -> reason).

    Parameters
    ----------
    name : str
        One of :data:`LIBRARY_SETS`.

    Returns
    -------
    factors : tuple of NamedFactor
    unavailable : dict of str -> str

    Raises
    ------
    ConfigError
        For an unknown set name (the message lists the known ones).
    """
    if name == "default":
        return LIBRARY, dict(UNAVAILABLE)
    if name == "alpha101":
        return ALPHA101, dict(A101_UNAVAILABLE)
    raise ConfigError(f"unknown library set {name!r}; known: {', '.join(LIBRARY_SETS)}")
