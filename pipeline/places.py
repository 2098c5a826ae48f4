"""Well-known place names, which let slot extraction tell a city from any other leftover words."""

from __future__ import annotations

from types import MappingProxyType

# (Chinese, English) pairs: China's provincial-level divisions and larger or well-known cities, then cities abroad.
_PAIRS = """
北京 Beijing|上海 Shanghai|天津 Tianjin|重庆 Chongqing|香港 Hong Kong|澳门 Macau|台北 Taipei|高雄 Kaohsiung
河北 Hebei|山西 Shanxi|辽宁 Liaoning|吉林 Jilin|黑龙江 Heilongjiang|江苏 Jiangsu|浙江 Zhejiang|安徽 Anhui
福建 Fujian|江西 Jiangxi|山东 Shandong|河南 Henan|湖北 Hubei|湖南 Hunan|广东 Guangdong|海南 Hainan|四川 Sichuan
贵州 Guizhou|云南 Yunnan|陕西 Shaanxi|甘肃 Gansu|青海 Qinghai|台湾 Taiwan|内蒙古 Inner Mongolia|广西 Guangxi
西藏 Tibet|宁夏 Ningxia|新疆 Xinjiang
广州 Guangzhou|深圳 Shenzhen|杭州 Hangzhou|南京 Nanjing|苏州 Suzhou|武汉 Wuhan|成都 Chengdu|西安 Xi'an
长沙 Changsha|郑州 Zhengzhou|济南 Jinan|青岛 Qingdao|大连 Dalian|沈阳 Shenyang|哈尔滨 Harbin|长春 Changchun
石家庄 Shijiazhuang|太原 Taiyuan|呼和浩特 Hohhot|合肥 Hefei|福州 Fuzhou|厦门 Xiamen|南昌 Nanchang|南宁 Nanning
海口 Haikou|三亚 Sanya|贵阳 Guiyang|昆明 Kunming|拉萨 Lhasa|兰州 Lanzhou|西宁 Xining|银川 Yinchuan
乌鲁木齐 Urumqi|宁波 Ningbo|无锡 Wuxi|温州 Wenzhou|佛山 Foshan|东莞 Dongguan|珠海 Zhuhai|中山 Zhongshan
惠州 Huizhou|汕头 Shantou|泉州 Quanzhou|洛阳 Luoyang|桂林 Guilin|丽江 Lijiang|大理 Dali|烟台 Yantai|威海 Weihai
徐州 Xuzhou|常州 Changzhou|扬州 Yangzhou|绍兴 Shaoxing|嘉兴 Jiaxing|金华 Jinhua|保定 Baoding|唐山 Tangshan
秦皇岛 Qinhuangdao|大同 Datong|包头 Baotou|鞍山 Anshan|芜湖 Wuhu|九江 Jiujiang|宜昌 Yichang|襄阳 Xiangyang
岳阳 Yueyang|株洲 Zhuzhou|柳州 Liuzhou|遵义 Zunyi|绵阳 Mianyang|咸阳 Xianyang|敦煌 Dunhuang|喀什 Kashgar
伦敦 London|巴黎 Paris|纽约 New York|东京 Tokyo|首尔 Seoul|新加坡 Singapore|悉尼 Sydney|墨尔本 Melbourne
洛杉矶 Los Angeles|旧金山 San Francisco|芝加哥 Chicago|西雅图 Seattle|波士顿 Boston|华盛顿 Washington
多伦多 Toronto|温哥华 Vancouver|蒙特利尔 Montreal|柏林 Berlin|慕尼黑 Munich|罗马 Rome|米兰 Milan|马德里 Madrid
巴塞罗那 Barcelona|阿姆斯特丹 Amsterdam|莫斯科 Moscow|迪拜 Dubai|曼谷 Bangkok|大阪 Osaka|京都 Kyoto
吉隆坡 Kuala Lumpur|雅加达 Jakarta|孟买 Mumbai|新德里 New Delhi|开罗 Cairo|伊斯坦布尔 Istanbul|维也纳 Vienna
苏黎世 Zurich|日内瓦 Geneva|都柏林 Dublin|爱丁堡 Edinburgh|曼彻斯特 Manchester|里斯本 Lisbon|布拉格 Prague
斯德哥尔摩 Stockholm|奥斯陆 Oslo|哥本哈根 Copenhagen|赫尔辛基 Helsinki|雅典 Athens|华沙 Warsaw
布鲁塞尔 Brussels|墨西哥城 Mexico City|圣保罗 São Paulo|布宜诺斯艾利斯 Buenos Aires|奥克兰 Auckland|河内 Hanoi
马尼拉 Manila|拉斯维加斯 Las Vegas|迈阿密 Miami|檀香山 Honolulu|巴塞尔 Basel|法兰克福 Frankfurt|汉堡 Hamburg
"""

_NAMES = tuple(tuple(pair.split(" ", 1)) for pair in _PAIRS.replace("\n", "|").split("|") if pair)

#: Chinese place names.
ZH_PLACES = frozenset(zh for zh, _ in _NAMES)
#: English place names by their case-folded form, mapped to their usual spelling.
EN_PLACES = MappingProxyType({en.casefold(): en for _, en in _NAMES})
#: Endings of Chinese administrative names ("杭州", "昆山市", "朝阳区"): a leftover with one reads as a place.
ZH_PLACE_SUFFIXES = tuple("市省县区镇乡村州")
