"""pacs.008.001.08 rendering: XSD-valid, exact amounts, deterministic; and reading it back."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]  # lxml-stubs is not installed

from settlement.domain.batch import Party, PayoutTx, SealedBatch, deterministic_uetr, short_id
from settlement.domain.money import exponent
from settlement.iso20022 import pacs008, xsd
from settlement.iso20022.errors import MessageBuildError, MessageRefusedError, SchemaValidationError
from settlement.iso20022.pacs008 import MESSAGE, NS, parse_pacs008_summary, render_pacs008
from settlement.iso20022.xml import findall_local, parse_secure, text_local

UUID_V4 = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}$")
DEBTOR = Party(name="Settlement Demo Processor GmbH", account_id="DE89370400440532013000",
               bic="MOCKDEFFXXX")
IBAN_CREDITOR = Party(name="Café Müller & Söhne <KG>", account_id="FR1420041010050500013M02606",
                      bic="BNPAFRPPXXX")
OTHER_CREDITOR = Party(name="Tokyo Ramen KK", account_id="0012345-678", account_scheme="OTHER",
                       bic="MHCBJPJT")
SEALED_AT = datetime(2024, 5, 1, 10, 0, 2, 123456, tzinfo=UTC)


def make_batch(amounts: list[int], currency: str = "EUR", creditor: Party = IBAN_CREDITOR,
               created_at: datetime = SEALED_AT, remittance: str = "Payout 2024-05-01") -> SealedBatch:
    txs = tuple(
        PayoutTx(
            payout_id=f"po-{i:05d}", instr_id=short_id("I", currency, str(i)),
            end_to_end_id=short_id("E", currency, str(i)), uetr=deterministic_uetr(currency, str(i)),
            amount_minor=amount, currency=currency, creditor=creditor, remittance=remittance, payments=1,
        )
        for i, amount in enumerate(amounts)
    )
    return SealedBatch(
        batch_id=f"b-{currency}", msg_id=short_id("M", currency, str(len(amounts))), created_at=created_at,
        settlement_date=date(2024, 5, 2), currency=currency, bank_bic=creditor.bic, transactions=txs,
    )


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


@pytest.mark.parametrize(("currency", "amounts", "ctrl_sum"), [
    ("EUR", [12345, 5], "123.50"),
    ("JPY", [12345, 5], "12350"),
    ("BHD", [12345, 5], "12.350"),
    ("EUR", [1], "0.01"),
    ("BHD", [1], "0.001"),
])
@pytest.mark.parametrize("creditor", [IBAN_CREDITOR, OTHER_CREDITOR], ids=["iban", "other"])
def test_rendered_batches_validate_with_the_currency_decimals(
    currency: str, amounts: list[int], ctrl_sum: str, creditor: Party,
) -> None:
    data = render_pacs008(make_batch(amounts, currency, creditor), DEBTOR)
    xsd.validate(data, MESSAGE)
    root = parse_secure(data)
    assert root.tag == f"{{{NS}}}Document"
    hdr = "FIToFICstmrCdtTrf/GrpHdr"
    assert text_local(root, f"{hdr}/CtrlSum") == ctrl_sum
    assert text_local(root, f"{hdr}/TtlIntrBkSttlmAmt") == ctrl_sum
    assert text_local(root, f"{hdr}/NbOfTxs") == str(len(amounts))
    for amt in findall_local(root, "FIToFICstmrCdtTrf/CdtTrfTxInf/IntrBkSttlmAmt"):
        assert amt.get("Ccy") == currency
        assert _decimals(amt.text) == exponent(currency)
    acct = "FIToFICstmrCdtTrf/CdtTrfTxInf/CdtrAcct/Id"
    if creditor.account_scheme == "IBAN":
        assert text_local(root, f"{acct}/IBAN") == creditor.account_id
    else:
        assert text_local(root, f"{acct}/Othr/Id") == creditor.account_id


def test_a_500_transaction_batch_validates_and_reads_back() -> None:
    amounts = [10**12 - i for i in range(500)]
    data = render_pacs008(make_batch(amounts, "BHD"), DEBTOR)
    summary = parse_pacs008_summary(data, validate_schema=True)
    assert summary.nb_of_txs == len(summary.transactions) == 500
    assert summary.ctrl_sum_minor == summary.total_minor == sum(amounts)
    assert [t.amount_minor for t in summary.transactions] == amounts


def test_header_and_transaction_fields_come_from_the_batch() -> None:
    batch = make_batch([100, 250])
    summary = parse_pacs008_summary(render_pacs008(batch, DEBTOR))
    assert (summary.msg_id, summary.currency, summary.settlement_date) == (
        batch.msg_id, "EUR", date(2024, 5, 2))
    for tx, got in zip(batch.transactions, summary.transactions, strict=True):
        assert (got.end_to_end_id, got.uetr, got.instr_id, got.amount_minor) == (
            tx.end_to_end_id, tx.uetr, tx.instr_id, tx.amount_minor)
        assert (got.creditor_bic, got.creditor_account) == (tx.creditor.bic, tx.creditor.account_id)


def test_rendering_is_deterministic_and_independent_of_the_timestamp_offset() -> None:
    first = render_pacs008(make_batch([1, 2, 3]), DEBTOR)
    assert render_pacs008(make_batch([1, 2, 3]), DEBTOR) == first
    berlin = SEALED_AT.astimezone(timezone(timedelta(hours=2)))
    assert render_pacs008(make_batch([1, 2, 3], created_at=berlin), DEBTOR) == first
    assert first.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")
    assert b"<CreDtTm>2024-05-01T10:00:02+00:00</CreDtTm>" in first


def test_every_uetr_is_a_uuid_v4() -> None:
    root = parse_secure(render_pacs008(make_batch(list(range(1, 50))), DEBTOR))
    uetrs = [e.text for e in findall_local(root, "FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/UETR")]
    assert len(uetrs) == 49
    assert all(UUID_V4.match(u) for u in uetrs)


def test_elements_follow_the_xsd_sequence() -> None:
    root = parse_secure(render_pacs008(make_batch([1]), DEBTOR))
    tx = findall_local(root, "FIToFICstmrCdtTrf/CdtTrfTxInf")[0]
    assert [etree.QName(c).localname for c in tx] == [
        "PmtId", "IntrBkSttlmAmt", "ChrgBr", "Dbtr", "DbtrAcct", "DbtrAgt", "CdtrAgt", "Cdtr",
        "CdtrAcct", "RmtInf"]


def test_free_text_is_cleaned_and_cut_to_140_characters() -> None:
    long_name = Party.model_construct(name="N\x01" + "é" * 200, account_id="0012345", account_scheme="OTHER",
                                      bic="MHCBJPJT")
    data = render_pacs008(make_batch([5], "JPY", long_name, remittance=""), DEBTOR)
    root = parse_secure(data)
    name = text_local(root, "FIToFICstmrCdtTrf/CdtTrfTxInf/Cdtr/Nm")
    assert name == "N " + "é" * 138
    assert text_local(root, "FIToFICstmrCdtTrf/CdtTrfTxInf/RmtInf/Ustrd") is None  # no empty RmtInf


@pytest.mark.parametrize("field", ["end_to_end_id", "instr_id"])
def test_an_over_long_identifier_is_never_truncated(field: str) -> None:
    batch = make_batch([1])
    tx = batch.transactions[0].model_copy(update={field: "X" * 36})
    with pytest.raises(MessageBuildError, match="35"):
        render_pacs008(batch.model_copy(update={"transactions": (tx,)}), DEBTOR)


def test_a_batch_that_cannot_be_expressed_is_refused() -> None:
    batch = make_batch([1, 2])
    with pytest.raises(MessageBuildError, match="no transactions"):
        render_pacs008(batch.model_copy(update={"transactions": ()}), DEBTOR)
    mixed = batch.transactions[1].model_copy(update={"currency": "USD"})
    with pytest.raises(MessageBuildError, match="USD"):
        render_pacs008(batch.model_copy(update={"transactions": (batch.transactions[0], mixed)}), DEBTOR)
    with pytest.raises(MessageBuildError, match="timezone"):
        render_pacs008(make_batch([1], created_at=datetime(2024, 5, 1, 10, 0)), DEBTOR)  # noqa: DTZ001
    with pytest.raises(MessageBuildError, match="18 digits"):
        render_pacs008(make_batch([10**17, 10**17] * 5), DEBTOR)
    with pytest.raises(MessageBuildError, match="charge bearer"):
        render_pacs008(batch, DEBTOR, charge_bearer="FREE")
    with pytest.raises(MessageBuildError, match="XAU"):
        render_pacs008(make_batch([1], "XAU"), DEBTOR)


@pytest.mark.parametrize(("update", "element"), [
    ({"account_id": "not-an-iban"}, "IBAN"),
    ({"bic": "bad!bic!"}, "BICFI"),
])
def test_data_the_xsd_refuses_fails_the_render_not_the_bank(update: dict[str, str], element: str) -> None:
    creditor = IBAN_CREDITOR.model_copy(update=update)
    with pytest.raises(SchemaValidationError) as info:
        render_pacs008(make_batch([1], creditor=creditor), DEBTOR)
    assert element in info.value.detail
    assert info.value.issues[0].line > 1


def test_an_uppercase_uetr_is_refused_by_the_xsd_pattern() -> None:
    batch = make_batch([1])
    tx = batch.transactions[0].model_copy(update={"uetr": batch.transactions[0].uetr.upper()})
    with pytest.raises(SchemaValidationError, match="UETR"):
        render_pacs008(batch.model_copy(update={"transactions": (tx,)}), DEBTOR)


def test_the_summary_refuses_sub_minor_precision_and_other_messages() -> None:
    data = render_pacs008(make_batch([12345]), DEBTOR)
    with pytest.raises(MessageRefusedError) as info:
        parse_pacs008_summary(data.replace(b">123.45<", b">123.455<"))
    assert info.value.code == "bad_amount"
    other = data.replace(b"pacs.008.001.08", b"pacs.002.001.10")
    with pytest.raises(MessageRefusedError) as info:
        parse_pacs008_summary(other)
    assert info.value.code == "wrong_message"
    with pytest.raises(MessageRefusedError) as info:
        parse_pacs008_summary(data.replace(b'Ccy="EUR">123.45</IntrBk', b'Ccy="USD">123.45</IntrBk'))
    assert info.value.code == "currency_mismatch"


def test_the_summary_reads_a_neighbouring_version_by_local_names() -> None:
    data = render_pacs008(make_batch([7, 8]), DEBTOR).replace(b"pacs.008.001.08", b"pacs.008.001.10")
    assert parse_pacs008_summary(data).total_minor == 15


CURRENCIES = st.sampled_from(["JPY", "EUR", "USD", "BHD", "KWD"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=40), CURRENCIES,
       st.sampled_from([IBAN_CREDITOR, OTHER_CREDITOR]))
def test_render_then_summary_keeps_every_amount_exact(
    amounts: list[int], currency: str, creditor: Party,
) -> None:
    data = render_pacs008(make_batch(amounts, currency, creditor), DEBTOR)
    xsd.validate(data, MESSAGE)
    summary = parse_pacs008_summary(data)
    assert summary.nb_of_txs == len(amounts) == len(summary.transactions)
    assert summary.ctrl_sum_minor == summary.total_minor == sum(amounts)
    assert [t.amount_minor for t in summary.transactions] == amounts
    root = parse_secure(data)
    texts = [e.text for e in findall_local(root, "FIToFICstmrCdtTrf/CdtTrfTxInf/IntrBkSttlmAmt")]
    texts += [text_local(root, "FIToFICstmrCdtTrf/GrpHdr/CtrlSum") or ""]
    assert all(_decimals(t) == exponent(currency) for t in texts)
    assert render_pacs008(make_batch(amounts, currency, creditor), DEBTOR) == data


class _BuiltEachTime:
    """Every transaction built element by element, as before the stamps: the reference."""

    def __init__(self, debtor: Party, charge_bearer: str, _first: PayoutTx, _remittance: bool) -> None:
        self.debtor, self.charge_bearer = debtor, charge_bearer

    def stamp(self, parent: Any, tx: PayoutTx, _remittance: str) -> None:
        pacs008._transaction(parent, tx, self.debtor, self.charge_bearer)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=140)
_CREDITORS = st.builds(
    Party, name=_TEXT, account_id=st.sampled_from(["FR1420041010050500013M02606",
                                                    "DE89370400440532013000"]),
    bic=st.sampled_from(["BNPAFRPPXXX", "MHCBJPJT"]),
) | st.builds(Party, name=_TEXT, account_id=st.from_regex(r"[A-Za-z0-9<&>'\"-]{1,34}", fullmatch=True),
              account_scheme=st.just("OTHER"), bic=st.just("MHCBJPJT"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=10**12), _CREDITORS,
                          st.sampled_from(["", "Payout <1> & co", "\x00\x0b", "x" * 140]) | _TEXT),
                min_size=1, max_size=12),
       st.sampled_from(["SLEV", "SHAR"]))
def test_stamped_transactions_are_the_bytes_built_element_by_element(
    rows: list[tuple[int, Party, str]], charge_bearer: str,
) -> None:
    batch = make_batch([a for a, _, _ in rows])
    batch = batch.model_copy(update={"transactions": tuple(
        t.model_copy(update={"creditor": c, "remittance": r})
        for t, (_, c, r) in zip(batch.transactions, rows, strict=True))})
    try:
        stamped = render_pacs008(batch, DEBTOR, charge_bearer=charge_bearer)
    except SchemaValidationError:
        stamped = None  # hypothesis' names may be text the XSD refuses: both must refuse it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pacs008, "_TxStamp", _BuiltEachTime)
        try:
            built = render_pacs008(batch, DEBTOR, charge_bearer=charge_bearer)
        except SchemaValidationError:
            built = None
    assert stamped == built


def test_an_over_long_identifier_in_a_stamped_transaction_is_refused() -> None:
    batch = make_batch([1, 2, 3])
    txs = list(batch.transactions)
    txs[2] = txs[2].model_copy(update={"end_to_end_id": "X" * 36})
    with pytest.raises(MessageBuildError, match="EndToEndId"):
        render_pacs008(batch.model_copy(update={"transactions": tuple(txs)}), DEBTOR)
    bad_account = OTHER_CREDITOR.model_copy(update={"account_id": "bad\x01id"})
    txs[2] = batch.transactions[2].model_copy(update={"creditor": bad_account})
    with pytest.raises(MessageBuildError, match="CdtrAcct"):
        render_pacs008(batch.model_copy(update={"transactions": tuple(txs)}), DEBTOR)
