"""The continuity statement (HTML and PDF) and VERIFY.txt: what people read.

The statement is built to what an exhibit continuity statement in England and Wales carries
(the MG11 witness statement form): the maker's name, role and number; the declaration of
truth in the form of s.9 of the Criminal Justice Act 1967; a signature and date; the case
reference and "Page x of y" on every page; the exhibit list first; then, per exhibit, its
continuity in time order, in words, with people named and their roles; the technical
detail (ffmpeg recipes, derivative hashes, ledger indices) in an appendix.

One content model (`statement`) is rendered twice, to HTML and to PDF, so both say the same.
Both come from the plan alone (no clock), so a rebuilt bundle is byte-identical: the PDF's
creation date is the time the statement speaks as at (its newest pinned entry), and its
fonts (the DejaVu-derived Bitstream Vera shipped with reportlab) are embedded.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from evidence.bundles.layout import TSA_CA
from evidence.bundles.manifest import ACCESS_TYPES, Plan
from evidence.ledger import catalogue

UK = ZoneInfo("Europe/London")
ROLE_NAMES = {
    "officer": "police officer",
    "evidence_officer": "evidence officer",
    "cps": "CPS lawyer",
    "external": "external recipient",
    "auditor": "auditor",
    "admin": "administrator",
}
DECLARATION = (
    "This statement (consisting of {pages} page{s} each signed by me) is true to the best of "
    "my knowledge and belief and I make it knowing that, if it is tendered in evidence, I "
    "shall be liable to prosecution if I have wilfully stated in it anything which I know to "
    "be false, or do not believe to be true."
)
AUTHORITY = (
    "Criminal Justice Act 1967, s.9; Magistrates' Courts Act 1980, s.5B; "
    "Criminal Procedure Rules, r.16.2"
)


# -- words for times, people and events --------------------------------------------------------


def uk_time(value: str | None) -> str:
    """'5 December 2026, 08:40:12 GMT (UTC+00:00)': UK local time with its offset shown."""
    if not value:
        return "not recorded"
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UK)
    offset = t.strftime("%z")
    return f"{t.day} {t.strftime('%B %Y, %H:%M:%S')} {t.tzname()} (UTC{offset[:3]}:{offset[3:]})"


def person(plan: Plan, actor: str | None) -> str:
    """'DC Sam Brown (evidence officer)'; a dock, the store itself or a policy, in words."""
    if not actor:
        return "not recorded"
    known = plan.manifest.get("people", {}).get(actor)
    if known:
        return f"{known['name']} ({ROLE_NAMES.get(known['role'], known['role'])})"
    kind, _, name = actor.partition(":")
    return {
        "device": f"docking station {name}",
        "system": "the evidence store",
        "policy": f"the retention policy ({name})",
        "user": f"user {name}",
        "officer": f"officer {name}",
    }.get(kind, actor)


def officer_text(plan: Plan, officer: dict[str, Any]) -> str:
    """'PC Dana Smith (officer 4711)', or that no officer is attributed: never None."""
    if not officer.get("id"):
        return "no officer attributed"
    known = plan.manifest.get("people", {}).get(f"officer:{officer['id']}")
    return f"{known['name']} (officer {officer['id']})" if known else f"officer {officer['id']}"


def camera_text(camera: dict[str, Any]) -> str:
    return f"camera {camera['serial']}" if camera.get("serial") else "camera not identified"


def how_text(plan: Plan, part: dict[str, Any]) -> str:
    change = part.get("reattributed")
    if change:
        return (
            f"attributed by {person(plan, change.get('by'))} on {uk_time(change.get('at'))}, "
            f"reason: \u201c{change.get('reason')}\u201d"
        )
    return str(part.get("how") or "not recorded (docked before the camera register existed)")


def attribution_sentence(plan: Plan, officer: dict[str, Any], camera: dict[str, Any]) -> str:
    """Who recorded it on which camera, and how the store established each."""
    who = (
        f"Recorded by {officer_text(plan, officer)} (how this was established: "
        f"{how_text(plan, officer)})."
        if officer.get("id")
        else "No officer is attributed to this recording."
    )
    on = (
        f"Camera {camera['serial']} (how this was established: {how_text(plan, camera)})."
        if camera.get("serial")
        else "The camera is not identified."
    )
    return f"{who} {on}"


def _detail(e: dict[str, Any], plan: Plan) -> str:
    """The facts that matter for one event, in words."""
    t = e["type"]
    bits = []
    if e.get("reason"):
        bits.append(f"reason: {e['reason']}")
    if t == "clip.ingested":
        bits.append(f"SHA-256 {e.get('sha256')} verified, {e.get('size')} bytes")
    if t in ("upload.declared", "upload.duplicate") and e.get("filename"):
        bits.append(f"file name {e['filename']}")
    if t == "derivative.created":
        bits.append(f"{e.get('kind')} (recipe in Appendix A)")
    if e.get("exhibit_ref"):
        bits.append(f"exhibit {e['exhibit_ref']}")
    if e.get("recipient"):
        bits.append(
            f"to {person(plan, 'user:' + e['recipient'])}, until {uk_time(e.get('expires_at'))}"
        )
    if t == "clip.attributed":
        new, old = e.get("new") or {}, e.get("previous") or {}
        bits.append(
            f"was {officer_text(plan, {'id': old.get('officer_id')})}, "
            f"{camera_text({'serial': old.get('camera_serial')})}; now "
            f"{officer_text(plan, {'id': new.get('officer_id')})}, "
            f"{camera_text({'serial': new.get('camera_serial')})}"
        )
    if e.get("role") and t in ACCESS_TYPES:
        bits.append(f"as {ROLE_NAMES.get(e['role'], e['role'])}")
    if e.get("rule"):
        bits.append(f"rule: {e['rule']}")
    return "; ".join(str(b) for b in bits)


# -- the content model -----------------------------------------------------------------------


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]
    widths: list[float]  # fractions of the text width
    # A long list of events: in the PDF one paragraph per row, not a grid of cells (a grid
    # of thousands of cells costs the build tens of megabytes for a bundle of 200 exhibits).
    rows_as_lines: bool = False


@dataclass
class Section:
    title: str
    blocks: list[str | Table] = field(default_factory=list)  # paragraphs and tables


@dataclass
class Statement:
    case_ref: str
    exhibit_refs: list[str]
    maker: dict[str, str]  # name, role, number
    as_at: str  # RFC 3339: the newest pinned entry's time
    sections: list[Section]


def statement(plan: Plan) -> Statement:
    m = plan.manifest
    case, bundle = m["case"], m.get("bundle") or {}
    maker_actor = bundle.get("requested_by")
    known = m.get("people", {}).get(maker_actor or "", {})
    maker = {
        "name": known.get("name") or person(plan, maker_actor),
        "role": ROLE_NAMES.get(known.get("role", ""), known.get("role") or "not recorded"),
        "number": known.get("officer_id") or "none recorded",
    }
    refs = [ex["exhibit_ref"] for ex in m["exhibits"]]
    as_at = max((e.get("at", "") for e in plan.entries.values()), default="")
    sections = [
        _opening(plan, maker, refs),
        _exhibit_list(plan),
        _this_bundle(plan),
        *[_continuity(plan, ex) for ex in m["exhibits"]],
        _appendix(plan),
    ]
    return Statement(case["reference"], refs, maker, as_at, sections)


def _opening(plan: Plan, maker: dict[str, str], refs: list[str]) -> Section:
    m = plan.manifest
    led = m["ledger"]
    return Section(
        "Statement",
        [
            f"I am {maker['name']}, {maker['role']} (collar/staff number {maker['number']}). "
            f"I produce as exhibits the {len(refs)} item{'s' if len(refs) != 1 else ''} listed "
            f"below ({', '.join(refs)}) in case {m['case']['reference']}, {m['case']['title']}.",
            "The facts below about each exhibit, who recorded it, on which camera, and everything "
            "that happened to it from docking to this bundle, are taken from the evidence store's "
            f"append-only ledger ({led['origin']}) as it stood at its signed checkpoint of "
            f"{led['tree_size']} entries. Every entry cited is in this bundle with a proof that it "
            "is in that ledger; VERIFY.txt says how anyone can check this without the store.",
            "Times are UK local time with the offset from UTC shown.",
        ],
    )


def _exhibit_list(plan: Plan) -> Section:
    rows = []
    for ex in plan.manifest["exhibits"]:
        officer = ex.get("officer") or {"id": ex.get("officer_id")}
        camera = ex.get("camera") or {"serial": ex.get("camera_serial")}
        names = ex.get("original_filenames") or [ex.get("original_filename") or "not recorded"]
        media = ex.get("media") or {}
        what = "Body-worn video" if media.get("video_codec") else "Recording"
        if ex.get("disposed"):
            what += " (disposed of; its record and hash remain)"
        elif ex.get("withheld"):
            what += " (original withheld: redacted copy only)"
        rows.append(
            [
                ex["exhibit_ref"],
                what,
                ", ".join(names),
                camera_text(camera).removeprefix("camera "),
                officer_text(plan, officer),
                uk_time(ex.get("recorded_at"))
                if ex.get("recorded_at")
                else f"not in the clip; docked {uk_time(ex['ingested_at'])}",
                ex["sha256"],
                f"{ex['size']:,}",
            ]
        )
    return Section(
        "Exhibit list",
        [
            Table(
                [
                    "Exhibit",
                    "Description",
                    "Original file name(s) as docked",
                    "Camera",
                    "Recorded by",
                    "Recorded",
                    "SHA-256",
                    "Size (bytes)",
                ],
                rows,
                [0.09, 0.09, 0.17, 0.1, 0.14, 0.14, 0.18, 0.09],
            )
        ],
    )


def _this_bundle(plan: Plan) -> Section:
    b = plan.manifest.get("bundle") or {}
    blocks: list[str | Table] = [
        f"This bundle was requested by {person(plan, b.get('requested_by'))} on "
        f"{uk_time(b.get('requested_at'))} and produced by the evidence store from its ledger "
        "as at that request."
    ]
    shares = b.get("shares") or []
    if shares:
        blocks.append(
            "It is for the case as shared with: "
            + "; ".join(
                f"{_recipient(plan, sh)}, shared by {person(plan, sh['shared_by'])} "
                f"on {uk_time(sh['at'])}, until {uk_time(sh['expires_at'])}"
                for sh in shares
            )
            + "."
        )
    else:
        blocks.append(
            "The case was not shared with anyone outside the force when it was requested."
        )
    return Section("This bundle", blocks)


def _recipient(plan: Plan, share: dict[str, Any]) -> str:
    """A share's recipient: the person, or (an organisation's share) the organisation."""
    if share.get("recipient"):
        return person(plan, "user:" + str(share["recipient"]))
    org = share.get("organisation")
    return f"the members of {org}" if org else "not recorded"


def _continuity(plan: Plan, ex: dict[str, Any]) -> Section:
    officer = ex.get("officer") or {"id": ex.get("officer_id")}
    camera = ex.get("camera") or {"serial": ex.get("camera_serial")}
    blocks: list[str | Table] = [attribution_sentence(plan, officer, camera)]
    gone = ex.get("disposed")
    if gone:
        blocks.append(
            f"Its footage was disposed of on {uk_time(gone.get('at'))} under the retention policy "
            f"({gone.get('rule') or 'rule not recorded'}), approved by {person(plan, gone.get('approved_by'))}"
            f"{': ' + gone['reason'] if gone.get('reason') else ''}. This bundle carries its record "
            "and the hash of its bytes, not the bytes."
        )
    if ex.get("withheld"):
        blocks.append(
            "This bundle was made for a recipient to whom this exhibit was disclosed as its "
            "redacted copy only: it carries the redacted copy and the original's record and "
            "hash, not the original."
        )
    history = ex.get("attribution_history") or []
    for before, after in zip(history, history[1:]):
        blocks.append(
            f"Re-attributed on {uk_time(after['at'])} by {person(plan, after['actor'])}, reason: "
            f"\u201c{after['reason']}\u201d. Before: {officer_text(plan, before['officer'])}, "
            f"{camera_text(before['camera'])}."
        )
    rows = [
        [
            uk_time(e.get("at")),
            catalogue.label(e["type"]),
            person(plan, e.get("actor")),
            _detail(e, plan),
        ]
        for _, e in sorted(((i, plan.entries[i]) for i in ex["ledger_entries"]), key=lambda x: x[0])
    ]
    blocks.append(
        Table(
            ["When", "Event", "Who", "Detail"], rows, [0.22, 0.24, 0.22, 0.32], rows_as_lines=True
        )
    )
    if not any(plan.entries[i]["type"] in ACCESS_TYPES for i in ex["ledger_entries"]):
        blocks.append("No one viewed or downloaded this exhibit before this bundle was requested.")
    blocks.append(disclosure_sentence(plan, ex))
    return Section(f"Exhibit {ex['exhibit_ref']}: continuity", blocks)


ORGANISATION_KINDS = {
    "cps": "Crown Prosecution Service",
    "police_force": "police force",
    "local_authority": "local authority",
    "other_agency": "agency",
    "defence_firm": "defence firm",
}


def disclosure_sentence(plan: Plan, ex: dict[str, Any]) -> str:
    """To whom the exhibit was disclosed and when, as the pinned ledger's shares say."""
    told = []
    for d in (plan.manifest.get("bundle") or {}).get("disclosures") or []:
        exhibits = d.get("exhibits", "all")
        if exhibits != "all" and ex["clip_id"] not in exhibits:
            continue
        if d.get("organisation"):
            kind = ORGANISATION_KINDS.get(d.get("organisation_kind") or "", "organisation")
            who = f"{d['organisation']} ({kind}, all its members)"
        else:
            who = person(plan, "user:" + str(d.get("recipient")))
        text = f"to {who} by {person(plan, d.get('shared_by'))} on {uk_time(d.get('at'))}"
        if d.get("purpose"):
            text += f", for \u201c{d['purpose']}\u201d under \u201c{d.get('legal_basis')}\u201d"
        if ex["clip_id"] in (d.get("redacted_only") or []):
            text += ", as its redacted copy only"
        ended = d.get("revoked_at")
        text += (
            f", until revoked on {uk_time(ended)}"
            if ended
            else f", until {uk_time(d.get('expires_at'))}"
        )
        told.append(text)
    if not told:
        return "It was not disclosed outside the force before this bundle was requested."
    return "It was disclosed " + "; and ".join(told) + "."


def _appendix(plan: Plan) -> Section:
    m = plan.manifest
    led = m["ledger"]
    blocks: list[str | Table] = [
        f"Ledger {led['origin']}, checkpoint of {led['tree_size']} entries, root hash "
        f"{led['root_hash']} (base64). Each exhibit's ledger entries, by index: "
        + "; ".join(
            f"{ex['exhibit_ref']}: {', '.join(map(str, ex['ledger_entries']))}"
            for ex in m["exhibits"]
        )
        + "."
    ]
    rows = []
    for ex in m["exhibits"]:
        for d in ex["derivatives"]:
            recipe = d.get("recipe") or {}
            # A proxy's recipe says whether the picture was copied or re-encoded, and why.
            method = (
                f"{recipe['method']} ({recipe.get('reason') or 'no reason recorded'}): "
                if "method" in recipe
                else ""
            )
            rows.append(
                [
                    ex["exhibit_ref"],
                    str(d["kind"]),
                    f"{d['sha256']} ({d['size']:,} bytes)",
                    f"{method}ffmpeg {recipe.get('ffmpeg_version', 'version not recorded')} from "
                    f"{recipe.get('input_sha256', ex['sha256'])}: "
                    + " ".join(map(str, recipe.get("args", []))),
                    str(d.get("file") or "not included in this bundle"),
                ]
            )
    if rows:
        blocks.append(
            Table(
                ["Exhibit", "Derived copy", "SHA-256", "How it was made", "File"],
                rows,
                [0.09, 0.1, 0.22, 0.44, 0.15],
            )
        )
    else:
        blocks.append("No derived copies were made.")
    return Section("Appendix A: technical detail", blocks)


# -- HTML --------------------------------------------------------------------------------------


def render_statement(plan: Plan) -> tuple[bytes, bytes]:
    """(HTML, PDF) of the statement: the PDF is laid out first, since both state its page count."""
    pdf, pages = render_pdf(plan)
    return render_html(plan, pages), pdf


def render_html(plan: Plan, pages: int) -> bytes:
    """The statement as HTML; `pages`: the PDF's page count, which its declaration states."""
    st, esc = statement(plan), html.escape
    head = f"Case {st.case_ref} · Exhibits {', '.join(st.exhibit_refs)}"
    out = [
        "<!doctype html><html lang='en-GB'><head><meta charset='utf-8'>",
        f"<title>Continuity statement: {esc(st.case_ref)}</title>",
        "<style>body{font-family:sans-serif;max-width:62em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #999;"
        "padding:.3em;font-size:.85em;vertical-align:top;text-align:left;word-break:break-word}"
        ".running{color:#555;font-size:.85em;border-bottom:1px solid #999}"
        ".sig{margin:1.5em 0;padding:1em;border:1px solid #333}"
        "@media print{@page{size:A4;margin:18mm}}</style>",
        "</head><body>",
        f"<p class='running'>{esc(head)}</p>",
        "<h1>Witness statement: exhibit continuity</h1>",
        f"<p>{esc(AUTHORITY)}</p>",
        f"<table><tr><th>Statement of</th><td>{esc(st.maker['name'])}</td></tr>"
        f"<tr><th>Role</th><td>{esc(st.maker['role'])}</td></tr>"
        f"<tr><th>Collar/staff number</th><td>{esc(st.maker['number'])}</td></tr>"
        f"<tr><th>Case reference</th><td>{esc(st.case_ref)}</td></tr>"
        f"<tr><th>As at</th><td>{esc(uk_time(st.as_at))}</td></tr></table>",
        f"<p class='declaration'>{esc(declaration(pages))}</p>",
        "<div class='sig'>Signature: ................................................ "
        "Date: ....................</div>",
    ]
    for section in st.sections:
        out.append(f"<h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(
                    "<table><tr>"
                    + "".join(f"<th>{esc(h)}</th>" for h in block.head)
                    + "</tr>"
                    + "".join(
                        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                        for row in block.rows
                    )
                    + "</table>"
                )
            else:
                out.append(f"<p>{esc(block)}</p>")
    out.append(
        "<div class='sig'>Signature: ................................................ "
        "Date: ....................</div>"
    )
    out.append("</body></html>\n")
    return "\n".join(out).encode()


# -- PDF ---------------------------------------------------------------------------------------


FONT, BOLD = "StatementSans", "StatementSans-Bold"


def _breakable(text: str) -> str:
    """A hash or key is one long word; in a narrow PDF column it wraps in groups of 16."""
    return " ".join(
        " ".join(w[i : i + 16] for i in range(0, len(w), 16)) if len(w) > 24 else w
        for w in text.split(" ")
    )


def _fonts() -> None:
    """Embedded TrueType fonts (a PDF with the 14 standard fonts does not embed them)."""
    import reportlab
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    fonts = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont(FONT, str(fonts / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(fonts / "VeraBd.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)


def render_pdf(plan: Plan) -> tuple[bytes, int]:
    """The same statement as an A4 PDF, and its page count: the case and exhibit references,
    "Page x of y" and a signature line on every page; reproducible (fixed id, the as-at
    creation date). The declaration states the page count, so a first pass counts the pages
    and the second, which prints the count, is the PDF (a third only if the number's own
    width moved a page, which it rarely can)."""
    _, counted = _pdf(plan, None)
    pdf, pages = _pdf(plan, counted)
    if pages != counted:
        pdf, pages = _pdf(plan, pages)
    return pdf, pages


def declaration(pages: int | None) -> str:
    return DECLARATION.format(pages=pages if pages else "these", s="" if pages == 1 else "s")


def _pdf(plan: Plan, pages: int | None) -> tuple[bytes, int]:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import LongTable, Paragraph, Spacer, TableStyle

    _fonts()
    st, esc = statement(plan), html.escape
    body = ParagraphStyle("body", fontName=FONT, fontSize=9.5, leading=12.5, spaceAfter=5)
    cell = ParagraphStyle("cell", fontName=FONT, fontSize=7.2, leading=8.8)
    line = ParagraphStyle(
        "line",
        fontName=FONT,
        fontSize=7.8,
        leading=9.8,
        leftIndent=10,
        firstLineIndent=-10,
        spaceAfter=2.5,
    )
    h1 = ParagraphStyle("h1", fontName=BOLD, fontSize=15, leading=19, spaceAfter=6)
    h2 = ParagraphStyle("h2", fontName=BOLD, fontSize=11.5, leading=15, spaceBefore=9, spaceAfter=4)
    width = A4[0] - 36 * mm

    def table(head: list[str], rows: list[list[str]], widths: list[float]) -> LongTable:
        t = LongTable(
            [[Paragraph(f"<b>{esc(h)}</b>", cell) for h in head]]
            + [[Paragraph(esc(_breakable(c)), cell) for c in row] for row in rows],
            colWidths=[w * width for w in widths],
            repeatRows=1,
        )
        t.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                    ("FONTNAME", (0, 0), (-1, -1), FONT),  # not the unembedded default
                    ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.92, 0.92, 0.92)),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return t

    signature = Paragraph(
        "Signature: ................................................&nbsp;&nbsp; "
        "Date: ....................",
        body,
    )
    story: list[Any] = [
        Paragraph("Witness statement: exhibit continuity", h1),
        Paragraph(esc(AUTHORITY), body),
        table(
            ["Statement of", "Role", "Collar/staff number", "Case reference", "As at"],
            [
                [
                    st.maker["name"],
                    st.maker["role"],
                    st.maker["number"],
                    st.case_ref,
                    uk_time(st.as_at),
                ]
            ],
            [0.22, 0.16, 0.16, 0.16, 0.3],
        ),
        Spacer(1, 6),
        Paragraph(esc(declaration(pages)), body),
        signature,
    ]

    def flowables(section: Section) -> list[Any]:
        out: list[Any] = [Paragraph(esc(section.title), h2)]
        for block in section.blocks:
            if isinstance(block, Table) and block.rows_as_lines:
                out += [
                    Paragraph(
                        " \u2014 ".join(
                            f"<b>{esc(c)}</b>" if n == 1 else esc(c) for n, c in enumerate(row) if c
                        ),
                        line,
                    )
                    for row in block.rows
                ]
            elif isinstance(block, Table):
                out.append(table(block.head, block.rows, block.widths))
            else:
                out.append(Paragraph(esc(block), body))
        return out

    # Each section's flowables are made when the layout reaches it, not all at once: a
    # statement of 200 exhibits would otherwise hold thousands of parsed paragraphs.
    story += [_Later(lambda section=section: flowables(section)) for section in st.sections]
    story += [Spacer(1, 10), signature]

    running = f"Case {st.case_ref} · Exhibits {', '.join(st.exhibit_refs)}"
    buf = io.BytesIO()
    doc = _lazy_doc_class()(
        buf,
        pagesize=A4,
        invariant=1,
        pageCompression=1,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
        title=f"Continuity statement, case {st.case_ref}",
        author=st.maker["name"],
        subject=f"Exhibits {', '.join(st.exhibit_refs)}",
        creator="evidence store",
        producer="evidence store",
        keywords=f"continuity statement, {st.case_ref}",
    )
    counted: list[int] = []
    doc.build(story, canvasmaker=_page_canvas(running, st.as_at, counted, pages))
    return buf.getvalue(), counted[0]


class _Later:
    """A placeholder in the story: `make()` gives the flowables it stands for."""

    def __init__(self, make: Any) -> None:
        self.make = make


@functools.cache
def _lazy_doc_class() -> Any:
    """SimpleDocTemplate that expands a `_Later` when the layout reaches it (made on first
    use: reportlab is imported only when a statement is rendered)."""
    from reportlab.platypus import SimpleDocTemplate

    class LazyDoc(SimpleDocTemplate):
        def handle_flowable(self, flowables: list[Any]) -> None:
            if flowables and isinstance(flowables[0], _Later):
                flowables[0:1] = flowables[0].make()
                return
            super().handle_flowable(flowables)

    return LazyDoc


def _page_canvas(running: str, as_at: str, counted: list[int], total: int | None) -> Any:
    """A canvas that writes the running header, "Page x of y" and a signature line on each
    page as it finishes it (y from the first pass: `render_pdf`), and whose creation date is
    the time the statement speaks as at. Pages go to the document as they are done, so a
    statement of a thousand pages is never held whole."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.lib.utils import TimeStamp
    from reportlab.pdfgen.canvas import Canvas

    when = dt.datetime.fromisoformat(as_at.replace("Z", "+00:00")) if as_at else None

    class PageCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Not Helvetica, which a PDF names but does not embed.
            kwargs.update(initialFontName=FONT, initialFontSize=9.5)
            super().__init__(*args, **kwargs)
            self._number = 0
            if when is not None:
                stamp = TimeStamp(invariant=True)
                stamp.t = when.timestamp()
                stamp.lt = time.gmtime(stamp.t)
                stamp.YMDhms = tuple(stamp.lt)[:6]
                self._doc._timeStamp = stamp

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._number += 1
            self.saveState()
            self.setFont(FONT, 7.5)
            self.drawString(18 * mm, A4[1] - 12 * mm, running)
            self.drawString(18 * mm, 10 * mm, "Signature: ..............................")
            self.drawRightString(A4[0] - 18 * mm, 10 * mm, f"Page {self._number} of {total or '?'}")
            self.restoreState()
            super().showPage()

        def save(self) -> None:
            counted.append(self._number)
            super().save()

    return PageCanvas


def render_verify_txt(plan: Plan, has_token: bool, has_tsa_ca: bool = False) -> bytes:
    """Every step with standard tools (coreutils, xxd, openssl 3, python3), each command on
    its own line after "$ " so it can be copied (and run by the tests exactly as written)."""
    led = plan.manifest["ledger"]
    token, tsa_opt = _token_steps(has_token, has_tsa_ca)
    return f"""HOW TO CHECK THIS BUNDLE (with standard tools; no access to the evidence store needed)

Unzip it, then run each command after "$ " in the unzipped directory (a Unix shell with
coreutils, xxd, OpenSSL 3 and Python 3). Steps 3 and 4 write a few small working files
(ledger-key.*, checkpoint.body, checkpoint.sig) beside the bundle's own; they are not part of it.

1. Every file is as it was when the bundle was made:

   $ sha256sum -c SHA256SUMS

   (SHA256SUMS lists every file except itself; a file not listed there is not part of the bundle.)

2. manifest.json (exhibits, their hashes and provenance) was signed by the force:

   $ openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in manifest.json -sigfile manifest.json.sig

   The signature only proves who signed if signing-key.pem is one of the force's published
   bundle keys (anyone can sign with a key of their own). Its fingerprint (key id):

   $ openssl pkey -pubin -in signing-key.pem -outform DER | sha256sum

   must equal the key_id of a key the force publishes (GET /api/v1/bundles/keys on the force's
   evidence store, or the copy the force gave the court), and that key's validity period
   (valid_from to valid_until) must cover the time the bundle was made.

3. The ledger checkpoint was signed by the force's ledger key. ledger/key.txt is the log's
   verifier key, name+keyid+base64(0x01 || 32-byte Ed25519 public key): compare it with the key
   the force publishes (GET /api/v1/ledger/key). Turn it into a PEM public key: the fixed DER
   prefix of an Ed25519 public key (302a300506032b6570032100), then the 32 key bytes that
   follow the 0x01 type byte:

   $ cut -d+ -f3- ledger/key.txt | base64 -d | tail -c 32 > ledger-key.raw
   $ (echo 302a300506032b6570032100 | xxd -r -p; cat ledger-key.raw) > ledger-key.der
   $ openssl pkey -pubin -inform DER -in ledger-key.der -out ledger-key.pem

   ledger/checkpoint.txt is a C2SP signed note: the signed text (origin, tree size {led["tree_size"]},
   root hash) is everything up to and including the newline before the blank line; after the
   blank line, the signature line is "— NAME BASE64", where BASE64 decodes to a 4-byte key
   hash followed by the 64-byte Ed25519 signature. Cut both, then check:

   $ sed '/^$/,$d' ledger/checkpoint.txt > checkpoint.body
   $ sed '1,/^$/d' ledger/checkpoint.txt | grep -F " $(cut -d+ -f1 ledger/key.txt) " | awk '{{print $NF}}' | base64 -d | tail -c +5 > checkpoint.sig
   $ openssl pkeyutl -verify -pubin -inkey ledger-key.pem -rawin -in checkpoint.body -sigfile checkpoint.sig

4. Every exhibit's ledger entries are in that signed checkpoint. Each line of
   ledger/entries.jsonl holds an entry (base64 of its RFC 8785 JSON) and its RFC 9162 inclusion
   proof; verify_proofs.py (Python 3, standard library only: read it, it is short) checks every
   proof against the checkpoint's root hash and prints one line per entry:

   $ python3 verify_proofs.py

   By hand, for one entry:
     leaf = SHA-256(0x00 || entry bytes)
     fn = index, sn = tree_size - 1, r = leaf
     for each proof hash p:
        if fn is odd or fn == sn: r = SHA-256(0x01 || p || r); while fn is even and fn != 0: fn >>= 1, sn >>= 1
        else:                     r = SHA-256(0x01 || r || p)
        fn >>= 1, sn >>= 1
     the proof is good if sn == 0 and r equals the root hash in ledger/checkpoint.txt (RFC 9162 2.1.3.2).
   Each exhibit's "clip.ingested" entry states the sha256 and size the store verified on docking.
   An exhibit whose clip was disposed of under the retention policy before this bundle was
   made has no media file: the manifest marks it "disposed" and its "clip.disposed" entry (the
   tombstone: hash, rule, reason, approver) is among the entries, so the ledger still proves the
   clip existed, what its bytes were, and when and why they were deleted.

{token}6. Everything above, and more (each exhibit's hash against the manifest and its ledger
   entry, and the signing key's validity period), with the evidence store's verifier:

   $ evidence verify bundle BUNDLE.zip --key 'LEDGER-VERIFIER-KEY' --bundle-key force-bundle-keys.json{tsa_opt}

   (force-bundle-keys.json: the force's published key history, GET /api/v1/bundles/keys.)

7. That the log only grew since this bundle was made (no entry removed or rewritten later):

   $ evidence verify ledger --api https://STORE --checkpoint ledger/checkpoint.txt
""".encode()


TSA_WARNING = (
    "   Do NOT trust ledger/tsa-ca.pem because it is in this bundle: whoever could change the bundle\n"
    "   could replace it with a certificate of their own. Obtain the TSA's root certificate\n"
    "   independently, from the TSA operator's website (the timestamping service named in the\n"
    "   token), and check that it is the same certificate (compare the SHA-256 fingerprints):\n\n"
    "   $ openssl x509 -in ledger/tsa-ca.pem -noout -subject -fingerprint -sha256\n\n"
    "   or run the command above with -CAfile pointing at the root you obtained yourself.\n\n"
)


def _token_steps(has_token: bool, has_tsa_ca: bool) -> tuple[str, str]:
    """Step 4 of VERIFY.txt, and the verifier's --tsa-ca option for step 5."""
    if not has_token:
        return (
            "5. No RFC 3161 timestamp token: no TSA was configured when this bundle was made.\n\n",
            "",
        )
    if has_tsa_ca:
        return (
            "5. The checkpoint's RFC 3161 timestamp. ledger/tsa-ca.pem is the certificate chain of the\n"
            "   timestamping authority (TSA) that issued ledger/checkpoint.tsr:\n\n"
            "   $ openssl ts -verify -in ledger/checkpoint.tsr -data ledger/checkpoint.txt "
            f"-CAfile {TSA_CA}\n\n" + TSA_WARNING,
            " --tsa-ca TSA-ROOT.pem",
        )
    return (
        "5. The checkpoint's RFC 3161 timestamp (needs the TSA's root certificate, tsa-ca.pem, from\n"
        "   the TSA operator's website):\n\n"
        "   $ openssl ts -verify -in ledger/checkpoint.tsr -data ledger/checkpoint.txt -CAfile tsa-ca.pem\n\n",
        " --tsa-ca tsa-ca.pem",
    )
