"""DL/T 645-2007 frames and values: golden frames captured from a real meter, BCD with and
without a sign, the 33H offset, the checksum, and garbage or truncated frames refused with a
reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.dlt645.codec import (
    BROADCAST,
    READ_ADDRESS,
    READ_DATA,
    ErrorAnswer,
    Frame,
    FrameError,
    FrameReader,
    address_answer,
    address_bytes,
    decode_bcd,
    decode_frame,
    encode_bcd,
    encode_frame,
    parse_format,
    read_address_request,
    read_answer,
    read_follow_request,
    read_request,
)


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# From "DLT645-2007报文解析", a public capture log of a meter at address 000000000161: the
# requests as the master sent them (four FEH first), the answers as the meter sent them.
ENERGY_REQUEST = hx("FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16")
ENERGY_ANSWER = hx("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16")  # 0.26 kWh
VOLTAGE_REQUEST = hx("FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16")
VOLTAGE_ANSWER = hx("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16")  # 100.1 V
CURRENT_REQUEST = hx("FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 34 35 35 18 16")
# The broadcast read-address request, as the standard's examples and many tools write it.
READ_ADDRESS_REQUEST = hx("68 AA AA AA AA AA AA 68 13 00 DF 16")
# Built by hand from the standard's layout (no capture at hand): an error answer "no
# requested data" (02H + 33H) and an address answer, checksums worked out on paper.
ERROR_ANSWER = hx("68 61 01 00 00 00 00 68 D1 01 35 39 16")
ADDRESS_ANSWER = hx("68 61 01 00 00 00 00 68 93 06 94 34 33 33 33 33 5F 16")

ADDRESS = "000000000161"
ENERGY = parse_format("XXXXXX.XX")
VOLTS = parse_format("XXX.X")
AMPS = parse_format("XXX.XXX")
KW = parse_format("XX.XXXX")
PF = parse_format("X.XXX")


# -- golden frames ------------------------------------------------------------------------


def test_requests_are_byte_for_byte_the_captured_ones() -> None:
    assert read_request(ADDRESS, 0x00010000) == ENERGY_REQUEST
    assert read_request(ADDRESS, 0x02010100) == VOLTAGE_REQUEST
    assert read_request(ADDRESS, 0x02020100) == CURRENT_REQUEST
    assert read_address_request(wakeup=0) == READ_ADDRESS_REQUEST
    assert read_address_request() == b"\xfe" * 4 + READ_ADDRESS_REQUEST


def test_captured_answers_decode_to_what_the_meter_showed() -> None:
    energy = decode_frame(ENERGY_ANSWER)
    assert energy == Frame(ADDRESS, 0x91, hx("00 00 01 00 26 00 00 00"))
    assert energy.from_meter
    assert not energy.is_error
    assert not energy.follows
    assert energy.function == READ_DATA
    assert decode_bcd(read_answer(energy, 0x00010000), ENERGY) == 0.26

    voltage = decode_frame(VOLTAGE_ANSWER)
    assert voltage.data == hx("00 01 01 02 01 10")
    assert decode_bcd(read_answer(voltage, 0x02010100), VOLTS) == 100.1


def test_the_captured_request_decodes_as_the_masters() -> None:
    frame = decode_frame(ENERGY_REQUEST)  # after its wake-up bytes
    assert frame == Frame(ADDRESS, 0x11, hx("00 00 01 00"))
    assert not frame.from_meter


def test_error_and_address_answers() -> None:
    error = decode_frame(ERROR_ANSWER)
    assert error.is_error
    assert error.function == READ_DATA
    with pytest.raises(ErrorAnswer) as refused:
        read_answer(error, 0x02800002)
    assert refused.value.code == 0x02
    assert refused.value.reason == "error_no_data"
    assert "no requested data" in str(refused.value)
    assert "02800002" in str(refused.value)

    answer = decode_frame(ADDRESS_ANSWER)
    assert answer.function == READ_ADDRESS
    assert address_answer(answer) == ADDRESS


def test_an_error_byte_with_several_bits_names_each() -> None:
    frame = decode_frame(encode_frame(ADDRESS, 0xD1, bytes([0x05])))
    with pytest.raises(ErrorAnswer) as refused:
        read_answer(frame, 0x00010000)
    assert refused.value.reason == "error_other+unauthorized"


# -- addresses, offset, checksum ----------------------------------------------------------


def test_the_address_travels_low_byte_first() -> None:
    assert address_bytes("000000000161") == hx("61 01 00 00 00 00")
    assert address_bytes("123456789012") == hx("12 90 78 56 34 12")
    assert address_bytes(BROADCAST) == hx("AA AA AA AA AA AA")
    with pytest.raises(ValueError, match="12-digit"):
        address_bytes("161")


def test_every_data_byte_carries_the_offset_and_wraps() -> None:
    frame = encode_frame(ADDRESS, 0x91, bytes([0x00, 0xCC, 0xCD, 0xFF]))
    assert frame[10:14] == bytes([0x33, 0xFF, 0x00, 0x32])
    assert decode_frame(frame).data == bytes([0x00, 0xCC, 0xCD, 0xFF])


def test_the_checksum_is_the_byte_sum_from_the_first_68h_and_excludes_wakeup_bytes() -> None:
    frame = encode_frame(ADDRESS, 0x11, hx("00 00 01 00"), wakeup=4)
    body = frame[4:-2]
    assert frame[-2] == sum(body) & 0xFF
    assert frame[:4] == b"\xfe" * 4
    assert frame[-1] == 0x16


# -- values -------------------------------------------------------------------------------


def test_unsigned_values_use_every_digit() -> None:
    # The top bit of an unsigned energy register is a digit: 999999.99 kWh, not negative.
    assert decode_bcd(hx("99 99 99 99"), ENERGY) == 999999.99
    assert decode_bcd(hx("00 00 00 80"), ENERGY) == 800000.0
    assert decode_bcd(hx("01 23"), VOLTS) == 230.1


def test_signed_values_take_the_top_bit_of_the_highest_byte() -> None:
    assert decode_bcd(hx("00 15 80"), AMPS, signed=True) == -1.5
    assert decode_bcd(hx("00 15 00"), AMPS, signed=True) == 1.5
    assert decode_bcd(hx("56 34 92"), KW, signed=True) == -12.3456
    assert decode_bcd(hx("00 85"), PF, signed=True) == -0.5
    assert decode_bcd(hx("00 00 00 80"), ENERGY, signed=True) == 0.0  # minus zero is zero
    assert encode_bcd(-1.5, AMPS, signed=True) == hx("00 15 80")
    assert encode_bcd(-12.3456, KW, signed=True) == hx("56 34 92")


def test_digits_that_are_not_bcd_are_refused() -> None:
    with pytest.raises(FrameError) as fill:
        decode_bcd(hx("FF FF"), VOLTS)  # a meter's "not available" fill
    assert fill.value.reason == "not_bcd"
    assert "FFFF" in str(fill.value)
    with pytest.raises(FrameError, match="not BCD"):
        decode_bcd(hx("1A 00"), VOLTS)
    with pytest.raises(FrameError) as short:
        decode_bcd(hx("01"), VOLTS)
    assert short.value.reason == "bad_length"


def test_values_that_do_not_fit_their_format_are_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_bcd(1000.0, VOLTS)
    with pytest.raises(ValueError, match="signed"):
        encode_bcd(800.0, AMPS, signed=True)  # the sign takes the top bit: 799.999 at most


@given(st.integers(min_value=-799999, max_value=799999))
def test_signed_values_round_trip(count: int) -> None:
    value = count / 1000
    assert decode_bcd(encode_bcd(value, AMPS, signed=True), AMPS, signed=True) == value


@given(st.integers(min_value=0, max_value=99999999))
def test_unsigned_values_round_trip(count: int) -> None:
    value = count / 100
    assert decode_bcd(encode_bcd(value, ENERGY), ENERGY) == value


def test_formats_read_as_the_standard_writes_them() -> None:
    assert (VOLTS.digits, VOLTS.decimals, VOLTS.size) == (4, 1, 2)
    assert (ENERGY.digits, ENERGY.decimals, ENERGY.size) == (8, 2, 4)
    assert parse_format("XXXXXXXX").decimals == 0
    with pytest.raises(ValueError, match="even number"):
        parse_format("XXX.XX")
    with pytest.raises(ValueError, match="X for each digit"):
        parse_format("999.9")


# -- garbage and truncated frames ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "truncated"),
        (b"\xfe\xfe", "truncated"),
        (ENERGY_ANSWER[:9], "truncated"),
        (ENERGY_ANSWER[:-3], "truncated"),  # the length byte promises more
        (hx("12 34 56"), "no_start"),
        (hx("68 61 01 00 00 00 00 99 91 00 00 16"), "no_second_start"),
        (ENERGY_ANSWER[:-2] + b"\x8b\x16", "bad_checksum"),
        (ENERGY_ANSWER[:-1] + b"\x17", "bad_end"),
        (ENERGY_ANSWER + b"\x00", "trailing"),
    ],
    ids=[
        "empty",
        "wakeup only",
        "cut in the header",
        "cut in the data",
        "no start",
        "no second start",
        "bad checksum",
        "bad end",
        "trailing byte",
    ],
)
def test_bytes_that_are_no_frame_are_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as refused:
        decode_frame(raw)
    assert refused.value.reason == reason
    assert str(refused.value)


def test_an_answer_for_another_identifier_or_without_one_is_refused() -> None:
    with pytest.raises(FrameError) as other:
        read_answer(decode_frame(VOLTAGE_ANSWER), 0x00010000)
    assert other.value.reason == "wrong_di"
    with pytest.raises(FrameError) as bare:
        read_answer(Frame(ADDRESS, 0x91, hx("00 00")), 0x00010000)
    assert bare.value.reason == "bad_length"
    with pytest.raises(FrameError) as bad_error:
        read_answer(Frame(ADDRESS, 0xD1, b""), 0x00010000)
    assert bad_error.value.reason == "bad_length"


def test_follow_up_answers_carry_their_sequence_number() -> None:
    request = read_follow_request(ADDRESS, 0x0203FF00, 1, wakeup=0)
    assert decode_frame(request) == Frame(ADDRESS, 0x12, hx("00 FF 03 02 01"))
    answer = Frame(ADDRESS, 0x92, hx("00 FF 03 02 11 22 33 01"))
    assert read_answer(answer, 0x0203FF00, follow_seq=1) == hx("11 22 33")
    with pytest.raises(FrameError) as wrong:
        read_answer(answer, 0x0203FF00, follow_seq=2)
    assert wrong.value.reason == "wrong_seq"


def test_an_address_answer_that_is_no_address_is_refused() -> None:
    with pytest.raises(FrameError) as short:
        address_answer(Frame(ADDRESS, 0x93, hx("61 01")))
    assert short.value.reason == "bad_length"
    with pytest.raises(FrameError) as hexy:
        address_answer(Frame(ADDRESS, 0x93, hx("6A 01 00 00 00 00")))
    assert hexy.value.reason == "not_bcd"


# -- frames out of a stream ----------------------------------------------------------------


def test_a_stream_yields_frames_across_reads_and_drops_wakeup_bytes() -> None:
    reader = FrameReader()
    stream = b"\xfe\xfe" + ENERGY_ANSWER + b"\xfe" + VOLTAGE_ANSWER
    frames = [f for byte in stream for f in reader.feed(bytes([byte]))]
    assert [f.data[:4] for f in frames] == [hx("00 00 01 00"), hx("00 01 01 02")]
    assert reader.problems == {}
    assert reader.buffer == b""


def test_junk_and_corrupt_frames_are_skipped_and_counted() -> None:
    reader = FrameReader()
    corrupt = ENERGY_ANSWER[:-2] + b"\x00\x16"
    frames = reader.feed(hx("00 13 37") + corrupt + VOLTAGE_ANSWER)
    assert [f.data for f in frames] == [decode_frame(VOLTAGE_ANSWER).data]
    assert reader.problems["junk"] == 1
    assert reader.problems["bad_checksum"] == 1
    assert "checksum" in reader.messages["bad_checksum"]


def test_noise_that_looks_like_a_long_frame_does_not_swallow_the_answer() -> None:
    # A 68H in the noise with a length byte of 200: the real answer behind it is whole long
    # before 212 bytes have come.
    reader = FrameReader()
    noise = hx("68 00 00 00 00 00 00 68 91 C8 01 02")
    assert reader.feed(noise + ENERGY_ANSWER) == [decode_frame(ENERGY_ANSWER)]
    assert reader.problems["junk"] == 1


def test_clearing_before_a_request_counts_what_waited() -> None:
    reader = FrameReader()
    assert reader.feed(ENERGY_ANSWER[:7]) == []
    reader.clear()
    assert reader.problems["junk"] == 1
    assert reader.feed(VOLTAGE_ANSWER) == [decode_frame(VOLTAGE_ANSWER)]
    quiet = FrameReader()
    quiet.feed(b"\xfe\xfe")
    quiet.clear()
    assert quiet.problems == {}
