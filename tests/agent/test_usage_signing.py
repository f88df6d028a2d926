"""The usage report's EIP-712 encoding is built by hand for speed: it must be exactly the standard's."""

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import usage

uint = lambda bits: st.integers(min_value=0, max_value=2**bits - 1)  # noqa: E731
reports = st.builds(usage.UsageReport, uint(256), uint(64), uint(64), uint(64), uint(64), uint(32))
KEY = Account.create()


@settings(max_examples=200)
@given(report=reports, chain_id=st.integers(min_value=1, max_value=2**64))
def test_the_encoding_is_eth_accounts_encode_typed_data(report: usage.UsageReport, chain_id: int) -> None:
    standard = encode_typed_data(
        domain_data=usage.domain(chain_id), message_types=usage.USAGE_TYPES, message_data=report.message()
    )
    assert usage._signable(report, chain_id) == standard


@settings(max_examples=20)
@given(report=reports)
def test_a_signature_recovers_its_signer_and_only_for_its_report_and_chain(report: usage.UsageReport) -> None:
    signature = usage.sign(report, chain_id=31337, key=KEY.key)
    assert usage.signer_of(report, chain_id=31337, signature=signature) == KEY.address
    assert usage.signer_of(report, chain_id=1, signature=signature) != KEY.address
    changed = usage.UsageReport(
        report.lease,
        report.period_start,
        report.period_end,
        report.gpu_seconds,
        report.run_seconds,
        report.restarts ^ 1,
    )
    assert usage.signer_of(changed, chain_id=31337, signature=signature) != KEY.address


@pytest.mark.parametrize(
    "report",
    [
        usage.UsageReport(1, -1, 2, 0, 0, 0),
        usage.UsageReport(1, 0, 2**64, 0, 0, 0),
        usage.UsageReport(1, 0, 1, 0, 0, 2**32),
    ],
)
def test_numbers_outside_their_types_are_refused(report: usage.UsageReport) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        usage.sign(report, chain_id=31337, key=KEY.key)
