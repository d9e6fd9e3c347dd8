"""The report's words in Chinese (the default: what an energy manager forwards) and English."""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]

_WORDS: dict[str, tuple[str, str]] = {
    "lighting_sockets": ("照明插座", "Lighting and sockets"),
    "hvac": ("空调", "HVAC"),
    "power": ("动力", "Power"),
    "special": ("特殊用电", "Special use"),
    "other": ("其他", "Other"),
    "unmetered": ("未分项", "Not sub-metered"),
    "electricity": ("电力", "Electricity"),
    "water": ("水", "Water"),
    "gas": ("天然气", "Natural gas"),
    "heat": ("外购热力", "Purchased heat"),
    "title": ("{site}{building} {month} 能源月报", "{site}{building} energy report, {month}"),
    "summary": ("概览", "Summary"),
    "total": ("用电总量", "Electricity used"),
    "per_m2": ("单位面积电耗", "Electricity per m²"),
    "after_hours": ("非办公时间用电", "Used outside office hours"),
    "carbon": ("碳排放", "Carbon"),
    "standard_coal": ("综合能耗（标准煤）", "Energy (standard coal)"),
    "coverage": ("数据完整率", "Data coverage"),
    "factor_set": ("排放因子", "Emission factors"),
    "by_category": ("分项用电", "Electricity by category"),
    "category": ("分项", "Category"),
    "this_month": ("本月", "This month"),
    "last_month": ("上月", "Last month"),
    "last_year": ("去年同月", "Same month last year"),
    "change": ("变化", "Change"),
    "share": ("占比", "Share"),
    "sum": ("合计", "Total"),
    "daily": ("每日分项用电", "Daily electricity by category"),
    "day": ("日期", "Day"),
    "quota": ("定额执行", "Quota"),
    "rule": ("规则", "Rule"),
    "month_limit": ("本月定额", "Month's quota"),
    "ytd": ("年初至今", "Year to date"),
    "year_limit": ("年度定额", "Year's quota"),
    "projected": ("预计全年", "Projected year"),
    "pace": ("预计/年度定额", "Projected / quota"),
    "no_quota": ("未配置定额规则（quota）。", "No quota rule is configured."),
    "consumers": ("用电量最大的设备", "Largest consumers"),
    "device": ("设备", "Device"),
    "use": ("分项", "Use"),
    "building": ("建筑", "Building"),
    "ac": ("空调温度执行", "Air-conditioning temperature limits"),
    "ac_share": (
        "合规机组小时占比（制冷≥26 °C，制热≤20 °C）",
        "Unit-hours within limits (cooling ≥ 26 °C, heating ≤ 20 °C)",
    ),
    "unit_hours": ("运行机组小时", "Unit-hours running"),
    "compliant_hours": ("合规机组小时", "Unit-hours within limits"),
    "enforced": ("自动回调设定温度次数", "Setpoints written back"),
    "refused": ("回调未成功", "Write-backs refused or failed"),
    "units": ("机组数", "Units"),
    "pv": ("光伏", "Solar PV"),
    "generation": ("发电量", "Generation"),
    "export": ("上网电量", "Exported"),
    "self_share": ("自用比例", "Self-consumed"),
    "yield": ("等效利用小时（kWh/kWp）", "Yield (kWh/kWp)"),
    "avoided": ("光伏减排量", "CO₂ avoided by PV"),
    "water_use": ("用水量", "Water used"),
    "per_person": ("人均", "Per person"),
    "pue": ("数据机房 PUE", "Data room PUE"),
    "room": ("机房", "Room"),
    "pue_value": ("PUE", "PUE"),
    "facility": ("总用电", "Facility"),
    "it": ("IT 用电", "IT load"),
    "limit": ("限值", "Limit"),
    "chargers": ("电动汽车充电桩", "EV chargers"),
    "charger": ("充电桩", "Charger"),
    "alarms": ("本月告警", "Alarms of the month"),
    "alarm_open": ("未关闭", "Open"),
    "alarm_closed": ("已关闭", "Closed"),
    "raised": ("发生时间", "Raised"),
    "state": ("状态", "State"),
    "grade": ("等级", "Grade"),
    "text": ("内容", "Text"),
    "none": ("无", "None"),
    "not_metered": ("未计量", "not metered"),
    "before_month": ("上月之前", "before the month"),
    "share_chart": ("分项用电占比", "Share by category"),
    "compare_chart": ("本月与上月、去年同月对比", "This month against last month and last year"),
    "active": ("未确认", "active"),
    "acknowledged": ("已确认", "acknowledged"),
    "cleared": ("已恢复", "cleared"),
    "closed": ("已关闭", "closed"),
    "red": ("红色", "red"),
    "orange": ("橙色", "orange"),
    "yellow": ("黄色", "yellow"),
    "blue": ("蓝色", "blue"),
    "whole_site": ("", ""),
    "generated": ("生成于", "Generated"),
}


def word(key: str, lang: Lang) -> str:
    """The word for `key`; an unknown key (a site's own `use` value) stands as it is."""
    pair = _WORDS.get(key)
    if pair is None:
        return key
    return pair[0] if lang == "zh" else pair[1]


def kwh(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} kWh"


def number(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}" if unit else text


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def change(now: float, before: float | None) -> str:
    """+12.3 % against before; — when there is nothing to compare."""
    if before is None or before == 0:
        return "—"
    text = f"{100 * (now - before) / before:+.1f}"
    return ("+0.0" if text == "-0.0" else text) + " %"
