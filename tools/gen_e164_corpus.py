"""Expected values for sipscreen's E.164 normalization tests, generated with
Google's libphonenumber; used only to generate fixtures, never at run time.

This script uses the Python port of libphonenumber (PyPI package
``phonenumbers``; nothing else outside the standard library) to build
tests/fixtures/e164_corpus.tsv: a corpus of (caller region, dialed digits)
pairs together with the E.164 number libphonenumber normalizes them to.

Regenerate from the repository root with:

    python3 tools/gen_e164_corpus.py > tests/fixtures/e164_corpus.tsv

The fixture is written to stdout; a summary (row count, distinct caller and
target regions, rows per kind) is printed to stderr.  Output is
deterministic for a given ``phonenumbers`` version (no randomness; rows are
sorted).

Format: UTF-8, '\\n' line ends, leading '#' comment lines, then one case per
line with exactly four tab-separated columns:

    caller_region <TAB> dialed <TAB> expected_e164 <TAB> kind

caller_region  ISO 3166-1 alpha-2 region of the caller (e.g. FR).
dialed         digits only, or '+' followed by digits.
expected_e164  format_number(parse(dialed, caller_region), E164).
kind           national  own-country number dialed nationally, with the
                         trunk prefix where the country uses one
                         (FR 0612345678, IT 0612345678, RU 88091234567)
               nsn       national significant number without the trunk
                         prefix (only where it differs from `national` and
                         still parses to the same number)
               idd       foreign number dialed with the caller region's
                         international prefix (FR 0039..., US 011...,
                         RU 810..., JP 010..., AU 0011..., ...)
               plus      the '+' form

Every row is checked: it parses, the result is_valid_number, and it equals
the number the case was built from.  (caller_region, dialed) pairs are
unique.
"""

import re
import sys
from collections import Counter

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType

# Regions whose numbers are in the corpus (as callers and as targets).
REGIONS = (
    "ES FR GB DE IT US CA RU JP AU BR MX AR IN CN NL BE CH AT PT PL SE NO DK "
    "FI IE GR TR ZA NG EG MA IL AE SA KR SG NZ CL CO "
    "CI SM HU CZ RO UA HK TW ID TH PH MY PK VN LU KE MN MU CU"
).split()

# Callers that dial every target number internationally: one per distinct
# plain-digit international prefix found in the metadata.
PRIMARY_IDD_CALLERS = ["FR", "US", "RU", "JP", "AU", "NG", "KE", "MN", "MU", "CU"]
# Callers that dial only the first number of each target internationally
# (their IDD comes from preferred_international_prefix or is '00').
SECONDARY_IDD_CALLERS = ["MX", "CN", "NZ", "FI", "GB", "DE", "IT", "ES", "AR", "IN", "ZA", "EG"]

EXAMPLE_TYPES = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.VOIP,
)

# Extra numbers known to be tricky for hand-written normalizers.  Each is
# kept only if phonenumbers considers it valid.
TRICKY = [
    "+390612345678",   # IT: fixed line keeps its leading 0 (Rome)
    "+390212345678",   # IT: Milan
    "+39800123456",    # IT: toll free, no leading 0
    "+393912345678",   # IT: mobile whose NSN starts with 39 (= country code)
    "+78091234567",    # RU: 809 premium range, dialed 8 809... nationally
    "+78001234567",    # RU: 800 toll free
    "+74951234567",    # RU: Moscow
    "+5491123456789",  # AR: mobile (9 + area + number), dialed 011 15 ...
    "+5493514123456",  # AR: Cordoba mobile
    "+543514123456",   # AR: Cordoba fixed line
    "+525512345678",   # MX: Mexico City
    "+523312345678",   # MX: Guadalajara
    "+2250123456789",  # CI: 10-digit numbers with leading 0
    "+2252721234567",  # CI: fixed line
    "+3780549812345",  # SM: fixed line with leading 0549
    "+4949211234567",  # DE: Emden 04921, NSN starts with 49 (= country code)
    "+33331234567",    # FR: NSN starts with 33 (= country code)
    "+919123456789",   # IN: mobile, NSN starts with 91 (= country code)
    "+31313123456",    # NL: Dieren 0313, NSN starts with 31
    "+3232123456",     # BE: Antwerp 03, NSN starts with 32
    "+441611234567",   # GB: NSN 161..., the national form starts with 01
    "+12015550123",    # US
    "+14165550123",    # CA: same country code as US
    "+61412345678",    # AU: mobile
    "+8613123456789",  # CN: mobile
    "+861012345678",   # CN: Beijing, national form starts with 010 (= JP IDD)
    "+819012345678",   # JP: mobile (RU dials it 810 81 ..., 810 = RU IDD)
    "+5511961234567",  # BR: Sao Paulo mobile
    "+27211234567",    # ZA: Cape Town
    "+20212345678",    # EG: Cairo, NSN starts with 2
    "+97221234567",    # IL: Jerusalem
    "+2348031234567",  # NG: mobile
]

KIND_ORDER = {"national": 0, "nsn": 1, "plus": 2, "idd": 3}


def plain_idd(region):
    """The caller region's international prefix if it is plain digits."""
    md = PhoneMetadata.metadata_for_region(region)
    for prefix in (md.preferred_international_prefix, md.international_prefix):
        if prefix and prefix.isdigit():
            return prefix
    return None


def try_parse(dialed, region):
    """E.164 of dialed as parsed for region, or None if not a valid number."""
    try:
        num = phonenumbers.parse(dialed, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, PhoneNumberFormat.E164)


def digits(s):
    return re.sub(r"\D", "", s)


def valid_in(e164, region):
    """Parsed number if e164 is a valid number belonging to region."""
    try:
        num = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    if phonenumbers.region_code_for_number(num) != region:
        return None
    return num


def e164(num):
    return phonenumbers.format_number(num, PhoneNumberFormat.E164)


def numbers_for_region(region):
    """Ordered, de-duplicated list of (number, origin) for region.

    origin is "example" (example_number_for_type), "tricky" (from TRICKY)
    or "variant" (an example with its last digits varied).
    """
    out = []
    seen = set()

    def add(num, origin):
        if num is None:
            return
        key = e164(num)
        if key not in seen:
            seen.add(key)
            out.append((num, origin))

    examples = []
    for t in EXAMPLE_TYPES:
        num = phonenumbers.example_number_for_type(region, t)
        if num is not None and valid_in(e164(num), region) is not None:
            examples.append(num)
            add(num, "example")
    for s in TRICKY:
        add(valid_in(s, region), "tricky")
    cc = str(phonenumbers.country_code_for_region(region))
    for num in examples:
        nsn = phonenumbers.national_significant_number(num)
        # Variants: vary the last digits, keeping the number valid.
        for tail in ("47", "903"):
            if len(tail) < len(nsn):
                add(valid_in("+" + cc + nsn[: -len(tail)] + tail, region),
                    "variant")
        # Variant whose NSN begins with the country code digits.
        if len(nsn) > len(cc) and not nsn.startswith(cc):
            add(valid_in("+" + cc + cc + nsn[len(cc):], region), "tricky")
    return out


def national_forms(num, region):
    """(national, nsn) dialing strings for num within its own region."""
    target = e164(num)
    nsn = phonenumbers.national_significant_number(num)
    np_ = PhoneMetadata.metadata_for_region(region).national_prefix
    fmt = digits(phonenumbers.format_number(num, PhoneNumberFormat.NATIONAL))
    candidates = []
    if not np_ or fmt.startswith(np_):
        candidates.append(fmt)
    if np_:
        candidates.append(np_ + nsn)
    candidates.append(fmt)
    national = None
    for c in candidates:
        if c and try_parse(c, region) == target:
            national = c
            break
    nsn_form = None
    if nsn != national and try_parse(nsn, region) == target:
        nsn_form = nsn
    return national, nsn_form


def main():
    rows = {}

    def emit(caller, dialed, expected, kind):
        assert re.fullmatch(r"\+?\d+", dialed), dialed
        got = try_parse(dialed, caller)
        if got is None or got != expected:
            return
        rows.setdefault((caller, dialed), (expected, kind))

    numbers = {r: numbers_for_region(r) for r in REGIONS}

    # Own-region cases: national, nsn, plus.
    for region in REGIONS:
        for num, _origin in numbers[region]:
            target = e164(num)
            national, nsn_form = national_forms(num, region)
            if national:
                emit(region, national, target, "national")
            if nsn_form:
                emit(region, nsn_form, target, "nsn")
            emit(region, target, target, "plus")

    # San Marino: a 6-digit local number gets 0549 prepended.
    sm = valid_in("+3780549812345", "SM")
    if sm is not None:
        emit("SM", "812345", e164(sm), "national")

    # International cases.
    def dial_abroad(caller, per_target):
        idd = plain_idd(caller)
        if idd is None:
            return
        caller_cc = phonenumbers.country_code_for_region(caller)
        for region in REGIONS:
            if phonenumbers.country_code_for_region(region) == caller_cc:
                continue  # same country code (e.g. US/CA): not an IDD call
            # The first two examples (fixed line, mobile) plus the tricky
            # numbers; variants are only used for the own-region cases.
            examples = [n for n, origin in numbers[region] if origin == "example"]
            tricky = [n for n, origin in numbers[region] if origin == "tricky"]
            targets = [n for n in examples[:2] + tricky
                       if phonenumbers.can_be_internationally_dialled(n)]
            if per_target is not None:
                targets = targets[:per_target]
            for num in targets:
                dialed = (idd + str(num.country_code)
                          + phonenumbers.national_significant_number(num))
                emit(caller, dialed, e164(num), "idd")

    for caller in PRIMARY_IDD_CALLERS:
        dial_abroad(caller, None)
    for caller in SECONDARY_IDD_CALLERS:
        dial_abroad(caller, 1)

    ordered = sorted(
        ((c, d, e, k) for (c, d), (e, k) in rows.items()),
        key=lambda r: (r[0], KIND_ORDER[r[3]], r[2], r[1]),
    )

    out = sys.stdout
    out.write("# Expected E.164 normalization cases for sipscreen tests.\n")
    out.write("# Generated by tools/gen_e164_corpus.py with phonenumbers %s "
              "(Google libphonenumber port). Do not edit by hand.\n"
              % phonenumbers.__version__)
    out.write("# Regenerate: python3 tools/gen_e164_corpus.py > "
              "tests/fixtures/e164_corpus.tsv\n")
    out.write("# Columns: caller_region<TAB>dialed<TAB>expected_e164<TAB>kind "
              "(kind: national|nsn|idd|plus)\n")
    for r in ordered:
        out.write("\t".join(r) + "\n")

    kinds = Counter(r[3] for r in ordered)
    callers = {r[0] for r in ordered}
    targets = {phonenumbers.region_code_for_number(phonenumbers.parse(r[2], None))
               for r in ordered}
    err = sys.stderr
    err.write("rows: %d\n" % len(ordered))
    err.write("distinct caller regions: %d\n" % len(callers))
    err.write("distinct target regions: %d\n" % len(targets))
    for k in sorted(kinds, key=KIND_ORDER.get):
        err.write("  %s: %d\n" % (k, kinds[k]))
    err.write("phonenumbers version: %s\n" % phonenumbers.__version__)


if __name__ == "__main__":
    main()
