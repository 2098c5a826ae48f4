# ruff: noqa: E501  (sentence templates read best one per line)
"""Sentence templates of this project, matched beside Home Assistant's own (hassil syntax).

Home Assistant's templates need the request's area for bare commands ("开灯", "next track"), and miss some
everyday Chinese and English phrasings (colours and volumes said plainly, "客厅的灯开着吗", "开始扫地"). These fill
those gaps. Blocks with ``metadata: {ask_when_unclear: true}`` act on every matching entity when there is one, and
ask which when there are several and the request gives no area.
"""

from __future__ import annotations

from typing import Any

_ASK = {"ask_when_unclear": True}
#: "打开书房的灯" in a home with no 书房: the place is caught whatever it is, so the reply can say it is unknown.
_UNKNOWN_PLACE = {"unknown_place": True}

#: Rules shared by the blocks below; prefixed so they never replace one of Home Assistant's rules.
ZH_RULES = {
    "sh_on": "(打开|开启|开一下|开|打开一下|点亮|启动)",
    "sh_off": "(关闭|关掉|关上|关一下|关了|关|熄灭|熄掉)",
    "sh_please": "[请][帮我|麻烦你|麻烦|给我|帮忙|你][把|将|给]",
    "sh_all": "[家里|全屋|整个家里|屋里][的](所有|全部)[的]",
    "sh_light": "(灯|灯光|电灯|吸顶灯|台灯|所有灯|所有的灯)",
    "sh_end": "[吧|一下|下|啊|呀|吗|呢|了]",
}
EN_RULES = {
    "sh_please": "[(please|can you|could you|would you|hey)] [please]",
    "sh_the": "[(the|my|our)]",
    "sh_light": "(light|lights|lamp|lamps)",
    "sh_all": "(all [of] [(the|my|our)]|every|each)",
    "sh_end": "[(please|now|for me)]",
}

ZH: dict[str, list[dict[str, Any]]] = {
    "HassTurnOn": [
        {
            "sentences": [
                "<sh_please><sh_on>{sh_place}的<sh_light><sh_end>",
                "<sh_please>{sh_place}的<sh_light><sh_on><sh_end>",
            ],
            "slots": {"domain": "light"},
            "metadata": _UNKNOWN_PLACE,
        },
        {
            "sentences": [
                "<sh_please><sh_all><sh_light>[都]<sh_on><sh_end>",
                "<sh_please><sh_on><sh_all><sh_light><sh_end>",
                "<sh_please>{area}[的][所有|全部][的]<sh_light>都<sh_on><sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please><sh_on><sh_light><sh_end>",
                "<sh_please><sh_light><sh_on><sh_end>",
                "<sh_please>把<sh_light><sh_on><sh_end>",
            ],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
        {
            "sentences": [
                "<sh_please><sh_on>{area}[的]<sh_light><sh_end>",
                "<sh_please>{area}[的]<sh_light><sh_on><sh_end>",
                "{area}[的]<sh_light>(开|打开|亮)起来",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please><sh_on>[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}<sh_on><sh_end>",
                "[{area}[的]]{name}(开|打开)起来",
                "(启用|激活|运行|执行|切换到|进入)[{area}[的]]{name}<sh_end>",
            ],
            "requires_context": {"domain": ["light", "switch", "fan", "media_player", "climate", "scene", "script"]},
        },
        {
            "sentences": [
                "<sh_please>(打开|拉开|开)[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}(打开|拉开|升起)<sh_end>",
            ],
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": [
                "<sh_please>(锁上|锁好|锁住|锁)[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}(锁上|锁好|锁住)<sh_end>",
            ],
            "requires_context": {"domain": ["lock"]},
        },
    ],
    "HassTurnOff": [
        {
            "sentences": [
                "<sh_please><sh_off>{sh_place}的<sh_light><sh_end>",
                "<sh_please>{sh_place}的<sh_light><sh_off><sh_end>",
            ],
            "slots": {"domain": "light"},
            "metadata": _UNKNOWN_PLACE,
        },
        {
            "sentences": [
                "<sh_please><sh_all><sh_light>[都]<sh_off><sh_end>",
                "<sh_please><sh_off><sh_all><sh_light><sh_end>",
                "<sh_please>{area}[的][所有|全部][的]<sh_light>都<sh_off><sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {"sentences": ["<sh_please>(熄灯|关灯睡觉)<sh_end>"], "slots": {"domain": "light"}, "metadata": _ASK},
        {
            "sentences": [
                "<sh_please><sh_off><sh_light><sh_end>",
                "<sh_please><sh_light><sh_off><sh_end>",
                "<sh_please>把<sh_light><sh_off><sh_end>",
            ],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
        {
            "sentences": [
                "<sh_please><sh_off>{area}[的]<sh_light><sh_end>",
                "<sh_please>{area}[的]<sh_light><sh_off><sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please><sh_off>[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}<sh_off><sh_end>",
            ],
            "requires_context": {"domain": ["light", "switch", "fan", "media_player", "climate", "script"]},
        },
        {
            "sentences": [
                "<sh_please>(关上|关闭|拉上|合上|关)[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}(关上|关闭|拉上|合上|放下)<sh_end>",
            ],
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": [
                "<sh_please>(解锁|开锁|打开)[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}(解锁|开锁)<sh_end>",
            ],
            "requires_context": {"domain": ["lock"]},
        },
    ],
    "HassLightSet": [
        {
            "sentences": [
                "<sh_please>[{area}[的]]{name}[的亮度](调暗|调亮|调低|调高|降低|提高|调)(到|至|成)[百分之]{brightness}[%]<sh_end>",
            ],
            "requires_context": {"domain": ["light"]},
        },
        {
            "sentences": [
                "<sh_please>[{area}[的]]{name}[的]亮度(调到|调成|调为|设为|设成|设置为|调|改成)[百分之]{brightness}[%]<sh_end>",
                "<sh_please>[{area}[的]]{name}(调到|调成)[百分之]{brightness}[%]亮度<sh_end>",
            ],
            "requires_context": {"domain": ["light"]},
        },
        {
            "sentences": [
                "<sh_please>[{area}[的]]{name}[的颜色](调成|换成|变成|改成|设为|调为|设成|调到)[颜色]{color}<sh_end>",
                "<sh_please>[{area}[的]]{name}(调成|换成|变成)[颜色]{color}[的]<sh_end>",
            ],
            "requires_context": {"domain": ["light"]},
        },
        {
            "sentences": [
                "<sh_please>{area}[的]<sh_light>[的颜色](调成|换成|变成|改成|设为|调到)[颜色]{color}<sh_end>"
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please>{area}[的]<sh_light>[的]亮度(调到|调成|调为|设为|设成|调|改成)[百分之]{brightness}[%]<sh_end>"
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please><sh_light>[的]亮度(调到|调成|调为|设为|设成|调|改成)[百分之]{brightness}[%]<sh_end>"
            ],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
        {
            "sentences": ["<sh_please><sh_light>[的颜色](调成|换成|变成|改成|设为|调到)[颜色]{color}<sh_end>"],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
    ],
    "HassClimateSetTemperature": [
        {
            "sentences": [
                "<sh_please>[{area}[的]]{name}[的温度](调到|调成|调为|设为|设成|设置为|设置成|设定为|调|改成|开到)[零上]{temperature}(度|摄氏度|℃)<sh_end>",
                "<sh_please>[{area}[的]]{name}(调到|设到|设成){temperature}(度|摄氏度|℃)<sh_end>",
            ],
            "requires_context": {"domain": ["climate"]},
        },
        {
            "sentences": [
                "<sh_please>[{area}[的]](温度|室温|空调|空调温度)(调到|调成|调为|设为|设成|设置为|设置成|调|改成|开到){temperature}(度|摄氏度|℃)<sh_end>"
            ],
            "metadata": _ASK,
        },
    ],
    "HassSetPosition": [
        {
            "sentences": [
                "<sh_please>[{area}[的]]{name}(开到|拉到|调到|设为|设成|打开到|关到)[百分之]{position}[%]<sh_end>"
            ],
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": [
                "<sh_please>[{area}[的]]{name}(开|拉开|打开|开到|拉到)一半<sh_end>",
                "<sh_please>(拉开|打开)一半[{area}[的]]{name}<sh_end>",
            ],
            "slots": {"position": 50},
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": [
                "<sh_please>[{area}[的]]窗帘(开到|拉到|调到|设为|设成|打开到|关到)[百分之]{position}[%]<sh_end>"
            ],
            "slots": {"domain": "cover"},
            "metadata": _ASK,
        },
        {
            "sentences": ["<sh_please>[{area}[的]]窗帘(开|拉开|打开|开到|拉到)一半<sh_end>"],
            "slots": {"domain": "cover", "position": 50},
            "metadata": _ASK,
        },
    ],
    "HassMediaPause": [
        {
            "sentences": [
                "<sh_please>(暂停|停止播放|停一下|暂停一下|别放了)[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}(暂停|停一下|暂停一下|先停一下|别放了)<sh_end>",
            ],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": ["(暂停|暂停播放|暂停一下|别放了|停止播放)<sh_end>"],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassMediaUnpause": [
        {
            "sentences": [
                "<sh_please>(继续播放|继续放|接着放|恢复播放)[{area}[的]]{name}<sh_end>",
                "<sh_please>[{area}[的]]{name}(继续播放|继续放|接着放|恢复播放|继续)<sh_end>",
            ],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": ["(继续播放|接着放|继续放|恢复播放)<sh_end>"],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassMediaNext": [
        {
            "sentences": [
                "[{area}[的]]{name}(下一首|下一曲|下一集|下一个|换下一首|切下一首)<sh_end>",
                "<sh_please>(播放|切到|换到|跳到|放)[{area}[的]]{name}[的](下一首|下一曲|下一集)<sh_end>",
            ],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": [
                "<sh_please>(下一首|下一曲|下一集|换一首|切歌|换首歌|换下一首|切到下一首|播放下一首|放下一首|跳过这首)[歌]<sh_end>"
            ],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassMediaPrevious": [
        {
            "sentences": ["[{area}[的]]{name}(上一首|上一曲|上一集|上一个)<sh_end>"],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": ["<sh_please>(上一首|上一曲|上一集|切到上一首|播放上一首|放上一首|回到上一首)[歌]<sh_end>"],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassSetVolume": [
        {
            "sentences": [
                "<sh_please>[{area}[的]]{name}[的]音量(调到|调成|调为|设为|设成|设置为|调|开到|改成)[百分之]{volume:volume_level}[%]<sh_end>"
            ],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": [
                "<sh_please>音量(调到|调成|调为|设为|设成|设置为|调|开到|改成)[百分之]{volume:volume_level}[%]<sh_end>",
                "<sh_please>(调|把)音量(调到|调成|到)[百分之]{volume:volume_level}[%]<sh_end>",
            ],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassVacuumStart": [
        {
            "sentences": [
                "<sh_please>(启动|开启|打开|开动|让)[{area}[的]]{name}[开始](扫地|打扫|清扫|工作|干活)<sh_end>",
                "<sh_please>[{area}[的]]{name}(开始|去)(扫地|打扫|清扫|工作|干活)<sh_end>",
            ],
            "requires_context": {"domain": ["vacuum"]},
        },
        {
            "sentences": ["<sh_please>(开始扫地|扫一下地|扫扫地|扫地|打扫一下卫生|打扫卫生|开始打扫|扫一扫地)<sh_end>"],
            "slots": {"domain": "vacuum"},
            "metadata": _ASK,
        },
    ],
    "HassVacuumReturnToBase": [
        {
            "sentences": [
                "<sh_please>[让][{area}[的]]{name}(回去充电|回充|回到充电座|回基座|回家|停止扫地|别扫了|回去)<sh_end>"
            ],
            "requires_context": {"domain": ["vacuum"]},
        },
        {
            "sentences": ["<sh_please>(别扫了|停止扫地|回去充电|回充)<sh_end>"],
            "slots": {"domain": "vacuum"},
            "metadata": _ASK,
        },
    ],
    "HassGetState": [
        {
            "sentences": ["[{area}[的]]{name}[是|还]{sh_media_states:state}[吗|没有|没]"],
            "requires_context": {"domain": ["media_player", "vacuum"]},
        },
        {
            "sentences": [
                "[{area}[的]]{name}[是][不是]{on_off_states:state}[吗|没有|着吗|的吗|没]",
                "[{area}[的]]{name}(开着没|开了没|关了没|关着没)",
            ],
            "requires_context": {"domain": ["light", "switch", "fan", "media_player", "climate"]},
        },
        {
            "sentences": [
                "{area}[的]<sh_light>[是]{on_off_states:state}[吗|没有|没]",
                "{area}[的]<sh_light>[是|还](开着|关着)的吗",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": ["[{area}[的]]{name}[是]{lock_states:state}[吗|没有|没]"],
            "requires_context": {"domain": ["lock"]},
        },
        {
            "sentences": ["[{area}[的]]{name}锁(好|上)了(吗|没|没有)"],
            "slots": {"state": "locked"},
            "requires_context": {"domain": ["lock"]},
        },
        {
            "sentences": ["[{area}[的]]{name}[是]{cover_states:state}[吗|没有|没]"],
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": [
                "[{area}[的]]{name}[现在](是什么状态|什么状态|的状态|状态怎么样|怎么样了|在干什么|是多少|多少)[了|呢]",
                "(查一下|看看|看一下)[{area}[的]]{name}[的状态]",
            ]
        },
    ],
    "HassClimateGetTemperature": [
        {
            "sentences": [
                "{area}[现在|目前](多少度|几度|温度多少|温度是多少|的温度是多少|的温度|温度怎么样|有多热|有多冷|热不热|冷不冷)[了|呢|啊]",
                "{area}[现在|目前][是](多少度|几度)[了|呢|啊]",
            ]
        },
        {
            "sentences": ["[{area}[的]]{name}[现在|目前][的][温度][是](多少度|几度|多少)[了|呢|啊]"],
            "requires_context": {"domain": ["climate"]},
        },
        {
            "sentences": [
                "(室内|屋里|家里|房间里)[现在|目前][的][温度|室温][是](多少度|几度|温度多少|温度是多少)[了|呢|啊]",
                "[现在|目前](室内|屋里|家里|房间里)[的](温度|室温)[是](多少度|几度|多少)[了|呢|啊]",
            ],
            "metadata": _ASK,
        },
    ],
}

#: Politeness that carries no meaning, removed before matching (beside Home Assistant's own skip words).
ZH_SKIP_WORDS = ("能不能", "可不可以", "能否", "你能", "你可以", "帮我", "帮忙", "请你", "拜托")
EN_SKIP_WORDS = ("hey", "ok", "okay", "kindly", "go ahead and", "i need you to", "will you")

#: States of media players and vacuums, which Home Assistant's lists leave out.
ZH_LISTS = {
    "sh_place": {"wildcard": True},
    "sh_media_states": {
        "values": [
            {"in": "(在播放|正在播放|在放|播放中)[的]", "out": "playing"},
            {"in": "(暂停了|暂停中|暂停着|已暂停)[的]", "out": "paused"},
            {"in": "(在扫地|正在扫地|在清扫|正在清扫|在打扫)[的]", "out": "cleaning"},
            {"in": "(在充电|在充电座上|回到充电座了)[的]", "out": "docked"},
        ]
    },
}
EN_LISTS = {
    "sh_place": {"wildcard": True},
    "sh_media_states": {
        "values": [
            {"in": "playing", "out": "playing"},
            {"in": "paused", "out": "paused"},
            {"in": "(cleaning|vacuuming)", "out": "cleaning"},
            {"in": "(docked|charging)", "out": "docked"},
        ]
    },
}

EN: dict[str, list[dict[str, Any]]] = {
    "HassTurnOn": [
        {
            "sentences": ["<sh_please> (turn|switch) on <sh_the> <sh_light> in <sh_the> {sh_place} <sh_end>"],
            "slots": {"domain": "light"},
            "metadata": _UNKNOWN_PLACE,
        },
        {
            "sentences": [
                "<sh_please> (turn|switch) on <sh_all> <sh_light> [in the (house|home)] <sh_end>",
                "<sh_please> (turn|switch) <sh_all> <sh_light> on [in the (house|home)] <sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please> turn on <sh_the> <sh_light> <sh_end>",
                "<sh_please> turn <sh_the> <sh_light> on <sh_end>",
                "<sh_please> switch on <sh_the> <sh_light> <sh_end>",
                "lights on",
                "<sh_please> put <sh_the> <sh_light> on",
            ],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
        {
            "sentences": [
                "<sh_please> (turn|switch) on <sh_the> {area} <sh_light> <sh_end>",
                "<sh_please> (turn|switch) <sh_the> {area} <sh_light> on <sh_end>",
                "<sh_please> (turn|switch) on <sh_the> <sh_light> in <sh_the> {area} <sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please> (turn|switch|power) on <sh_the> [{area}] {name} <sh_end>",
                "<sh_please> (turn|switch|power) <sh_the> [{area}] {name} on <sh_end>",
                "<sh_please> (activate|run|start|enable|trigger) <sh_the> {name} [scene|script] <sh_end>",
            ],
            "requires_context": {"domain": ["light", "switch", "fan", "media_player", "climate", "scene", "script"]},
        },
        {
            "sentences": ["<sh_please> (open|raise|pull open) <sh_the> [{area}] {name} <sh_end>"],
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": [
                "<sh_please> lock <sh_the> [{area}] {name} <sh_end>",
                "<sh_please> lock up <sh_the> {name} <sh_end>",
            ],
            "requires_context": {"domain": ["lock"]},
        },
    ],
    "HassTurnOff": [
        {
            "sentences": ["<sh_please> (turn|switch) off <sh_the> <sh_light> in <sh_the> {sh_place} <sh_end>"],
            "slots": {"domain": "light"},
            "metadata": _UNKNOWN_PLACE,
        },
        {
            "sentences": [
                "<sh_please> (turn|switch) off <sh_all> <sh_light> [in the (house|home)] <sh_end>",
                "<sh_please> (turn|switch) <sh_all> <sh_light> off [in the (house|home)] <sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please> turn off <sh_the> <sh_light> <sh_end>",
                "<sh_please> turn <sh_the> <sh_light> off <sh_end>",
                "<sh_please> switch off <sh_the> <sh_light> <sh_end>",
                "lights off",
                "<sh_please> kill <sh_the> <sh_light>",
            ],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
        {
            "sentences": [
                "<sh_please> (turn|switch) off <sh_the> {area} <sh_light> <sh_end>",
                "<sh_please> (turn|switch) <sh_the> {area} <sh_light> off <sh_end>",
                "<sh_please> (turn|switch) off <sh_the> <sh_light> in <sh_the> {area} <sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please> (turn|switch|power|shut) off <sh_the> [{area}] {name} <sh_end>",
                "<sh_please> (turn|switch|power|shut) <sh_the> [{area}] {name} off <sh_end>",
            ],
            "requires_context": {"domain": ["light", "switch", "fan", "media_player", "climate", "script"]},
        },
        {
            "sentences": ["<sh_please> (close|shut|lower|draw) <sh_the> [{area}] {name} <sh_end>"],
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": ["<sh_please> unlock <sh_the> [{area}] {name} <sh_end>"],
            "requires_context": {"domain": ["lock"]},
        },
    ],
    "HassLightSet": [
        {
            "sentences": [
                "<sh_please> (set|dim|turn|change|put|bring) <sh_the> [{area}] {name} [brightness] to {brightness}[%| percent] [brightness] <sh_end>",
                "<sh_please> (set|change) <sh_the> [{area}] {name}[']s brightness to {brightness}[%| percent] <sh_end>",
                "<sh_please> (set|change) <sh_the> brightness of <sh_the> [{area}] {name} to {brightness}[%| percent] <sh_end>",
            ],
            "requires_context": {"domain": ["light"]},
        },
        {
            "sentences": [
                "<sh_please> (make|turn|set|change) <sh_the> [{area}] {name} [color to] {color} <sh_end>",
                "<sh_please> (set|change) <sh_the> color of <sh_the> [{area}] {name} to {color} <sh_end>",
            ],
            "requires_context": {"domain": ["light"]},
        },
        {
            "sentences": [
                "<sh_please> (make|turn|set|change) <sh_the> {area} <sh_light> [color to] {color} <sh_end>",
                "<sh_please> (make|turn|set|change) <sh_the> <sh_light> in <sh_the> {area} [color to] {color} <sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please> (set|dim|turn|change|put|bring) <sh_the> {area} <sh_light> [brightness] to {brightness}[%| percent] <sh_end>",
                "<sh_please> (set|dim|turn|change) <sh_the> <sh_light> in <sh_the> {area} to {brightness}[%| percent] <sh_end>",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "<sh_please> (set|dim|turn|change|put|bring) <sh_the> <sh_light> [brightness] to {brightness}[%| percent] <sh_end>",
                "<sh_please> dim <sh_the> <sh_light> to {brightness}[%| percent]",
            ],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
        {
            "sentences": ["<sh_please> (make|turn|set|change) <sh_the> <sh_light> [color to] {color} <sh_end>"],
            "slots": {"domain": "light"},
            "metadata": _ASK,
        },
    ],
    "HassClimateSetTemperature": [
        {
            "sentences": [
                "<sh_please> (set|change|put|turn|adjust) <sh_the> [{area}] {name} [temperature] to {temperature} [degrees] [celsius] <sh_end>"
            ],
            "requires_context": {"domain": ["climate"]},
        },
        {
            "sentences": [
                "<sh_please> (set|change|make|adjust) <sh_the> [{area}] (temperature|heat|heating|ac|a/c|air conditioning) to {temperature} [degrees] [celsius] [in <sh_the> {area}] <sh_end>",
                "<sh_please> make it {temperature} degrees [in <sh_the> {area}] <sh_end>",
            ],
            "metadata": _ASK,
        },
    ],
    "HassSetPosition": [
        {
            "sentences": [
                "<sh_please> (set|open|close|move|put) <sh_the> [{area}] {name} to {position}[%| percent] <sh_end>",
                "<sh_please> open <sh_the> [{area}] {name} {position}[%| percent] <sh_end>",
            ],
            "requires_context": {"domain": ["cover", "valve"]},
        },
        {
            "sentences": [
                "<sh_please> open <sh_the> [{area}] {name} halfway <sh_end>",
                "<sh_please> open <sh_the> [{area}] {name} half way <sh_end>",
            ],
            "slots": {"position": 50},
            "requires_context": {"domain": ["cover", "valve"]},
        },
    ],
    "HassMediaPause": [
        {
            "sentences": ["<sh_please> (pause|stop) <sh_the> [{area}] {name} <sh_end>"],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": ["<sh_please> (pause|stop) [the] (music|playback|song|movie|show|video) <sh_end>", "pause"],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassMediaUnpause": [
        {
            "sentences": ["<sh_please> (resume|unpause|continue) <sh_the> [{area}] {name} <sh_end>"],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": [
                "<sh_please> (resume|unpause|continue) [the] (music|playback|song|movie|show|video|playing) <sh_end>",
                "resume",
                "unpause",
            ],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassMediaNext": [
        {
            "sentences": ["<sh_please> (skip|next) [(track|song)] on <sh_the> [{area}] {name} <sh_end>"],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": [
                "<sh_please> (next|skip) [(track|song)] <sh_end>",
                "<sh_please> skip (this|the) (track|song) <sh_end>",
                "<sh_please> play the next (track|song) <sh_end>",
                "<sh_please> go to the next (track|song) <sh_end>",
            ],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassMediaPrevious": [
        {
            "sentences": ["<sh_please> previous [(track|song)] on <sh_the> [{area}] {name} <sh_end>"],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": [
                "<sh_please> previous [(track|song)] <sh_end>",
                "<sh_please> (play|go back to) the (previous|last) (track|song) <sh_end>",
                "<sh_please> go back (one|a) (track|song) <sh_end>",
            ],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassSetVolume": [
        {
            "sentences": [
                "<sh_please> (set|turn|change|put) <sh_the> [{area}] {name} volume to {volume:volume_level}[%| percent] <sh_end>",
                "<sh_please> (set|turn|change|put) <sh_the> volume (of|on) <sh_the> [{area}] {name} to {volume:volume_level}[%| percent] <sh_end>",
            ],
            "requires_context": {"domain": ["media_player"]},
        },
        {
            "sentences": [
                "<sh_please> (set|turn|change|put) <sh_the> volume to {volume:volume_level}[%| percent] <sh_end>",
                "volume {volume:volume_level}[%| percent]",
            ],
            "slots": {"domain": "media_player"},
            "metadata": _ASK,
        },
    ],
    "HassVacuumStart": [
        {
            "sentences": [
                "<sh_please> (start|run|turn on) <sh_the> [{area}] {name} <sh_end>",
                "<sh_please> (tell|have|let) <sh_the> {name} (start|to start) cleaning <sh_end>",
            ],
            "requires_context": {"domain": ["vacuum"]},
        },
        {
            "sentences": [
                "<sh_please> (start|begin) (cleaning|vacuuming) <sh_end>",
                "<sh_please> vacuum the (floor|floors|house) <sh_end>",
                "<sh_please> clean the (floor|floors|house) <sh_end>",
            ],
            "slots": {"domain": "vacuum"},
            "metadata": _ASK,
        },
    ],
    "HassVacuumReturnToBase": [
        {
            "sentences": [
                "<sh_please> (send|return|dock) <sh_the> {name} [back] [(to|home to)] [(the|its)] [(base|dock|charger)] <sh_end>",
                "<sh_please> (tell|have|let) <sh_the> {name} (go|return) (home|back to [(the|its)] (base|dock|charger)) <sh_end>",
            ],
            "requires_context": {"domain": ["vacuum"]},
        },
        {
            "sentences": ["<sh_please> stop (cleaning|vacuuming) <sh_end>"],
            "slots": {"domain": "vacuum"},
            "metadata": _ASK,
        },
    ],
    "HassGetState": [
        {
            "sentences": [
                "(is|are) <sh_the> [{area}] {name} [(still|currently)] {sh_media_states:state}[ right now| now]"
            ],
            "requires_context": {"domain": ["media_player", "vacuum"]},
        },
        {
            "sentences": [
                "(is|are) <sh_the> [{area}] {name} [(still|currently)] {on_off_states:state}[ right now| now]",
                "(is|are) <sh_the> [{area}] {name} [(still|currently)] {lock_states:state}[ right now| now]",
                "(is|are) <sh_the> [{area}] {name} [(still|currently)] {cover_states:state}[ right now| now]",
            ]
        },
        {
            "sentences": [
                "(is|are) <sh_the> {area} <sh_light> [(still|currently)] {on_off_states:state}[ right now| now]",
                "(is|are) <sh_the> <sh_light> in <sh_the> {area} [(still|currently)] {on_off_states:state}[ right now| now]",
            ],
            "slots": {"domain": "light"},
        },
        {
            "sentences": [
                "(what is|what's|whats|tell me|check) <sh_the> (state|status) of <sh_the> [{area}] {name}",
                "(what is|what's|whats) <sh_the> [{area}] {name} (state|status|reading|at|doing)",
                "how is <sh_the> [{area}] {name} [doing]",
                "(what is|what's) <sh_the> {name}",
            ]
        },
    ],
    "HassClimateGetTemperature": [
        {
            "sentences": [
                "(what is|what's|whats|tell me) <sh_the> (temperature|temp) (in|of) <sh_the> {area} [(now|right now)]",
                "how (warm|cold|hot) is [it in] <sh_the> {area} [(now|right now)]",
                "(what is|what's|whats) <sh_the> {area} (temperature|temp)",
                "what temperature is it in <sh_the> {area}",
                "is it (warm|cold|hot) in <sh_the> {area}",
            ]
        },
        {
            "sentences": [
                "(what is|what's|whats) <sh_the> {name} (set to|at|reading)",
                "what temperature is <sh_the> {name} [set to|at]",
            ],
            "requires_context": {"domain": ["climate"]},
        },
        {
            "sentences": [
                "(what is|what's|whats|tell me) <sh_the> (temperature|temp) (inside|indoors|in here|at home) [(now|right now)]",
                "how (warm|cold|hot) is it (inside|indoors|in here)",
            ],
            "metadata": _ASK,
        },
    ],
}
