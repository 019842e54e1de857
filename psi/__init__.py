"""Pure private-set-intersection library: identifiers, ristretto255 group, sans-I/O PSI sessions, batch engine.

No I/O happens here except in :mod:`psi.engine`'s explicit file helpers. See DESIGN.md §3 and §6.
Other packages import what they need from here (sessions, errors, the mapper seam, the RNG protocol),
never from the private modules.
"""

from psi._batch import BatchMapper, serial_map
from psi._errors import (
    InvalidIdentifier,
    InvalidPoint,
    PeerSetTooLarge,
    PsiCryptoError,
    PsiError,
    PsiLocalError,
    PsiRemoteError,
)
from psi._session import RandomSource, Session, event_of
from psi.cardinality import CardinalityReceiver, CardinalityResult, CardinalitySender, two_sided_geometric
from psi.ecdh import EcdhPsiReceiver, EcdhPsiSender, PsiResult
from psi.group import Scalar, hash_to_group, hash_to_group_batch, multiply, multiply_batch
from psi.identifiers import NormalisedColumn, gb11643_check_digit, luhn_check_digit, normalise, normalise_column
from psi.labeled import LabeledPsiReceiver, LabeledPsiSender, LabeledResult, SenderTable, prepare_sender_table
from psi.multi_key import DEFAULT_PRIORITY, MultiKeyMatcher, MultiKeyResult

__all__ = [
    "DEFAULT_PRIORITY",
    "BatchMapper",
    "CardinalityReceiver",
    "CardinalityResult",
    "CardinalitySender",
    "EcdhPsiReceiver",
    "EcdhPsiSender",
    "InvalidIdentifier",
    "InvalidPoint",
    "LabeledPsiReceiver",
    "LabeledPsiSender",
    "LabeledResult",
    "MultiKeyMatcher",
    "MultiKeyResult",
    "NormalisedColumn",
    "PeerSetTooLarge",
    "PsiCryptoError",
    "PsiError",
    "PsiLocalError",
    "PsiRemoteError",
    "PsiResult",
    "RandomSource",
    "Scalar",
    "SenderTable",
    "Session",
    "event_of",
    "gb11643_check_digit",
    "hash_to_group",
    "hash_to_group_batch",
    "luhn_check_digit",
    "multiply",
    "multiply_batch",
    "normalise",
    "normalise_column",
    "prepare_sender_table",
    "serial_map",
    "two_sided_geometric",
]
