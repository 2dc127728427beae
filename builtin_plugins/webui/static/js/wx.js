// The weather tool's descriptions (WMO codes, in English from the server) in the user's
// language; an unknown one is shown as it came.
import { currentLang } from "./i18n.js";

const WX = {
  ja: {
    "Clear sky": "快晴", "Mainly clear": "晴れ", "Partly cloudy": "晴れ時々曇り", Overcast: "曇り", Fog: "霧",
    "Depositing rime fog": "着氷性の霧", "Light drizzle": "弱い霧雨", "Moderate drizzle": "霧雨", "Dense drizzle": "強い霧雨",
    "Light freezing drizzle": "弱い着氷性の霧雨", "Dense freezing drizzle": "強い着氷性の霧雨", "Slight rain": "小雨",
    "Moderate rain": "雨", "Heavy rain": "大雨", "Light freezing rain": "弱い着氷性の雨", "Heavy freezing rain": "強い着氷性の雨",
    "Slight snow fall": "小雪", "Moderate snow fall": "雪", "Heavy snow fall": "大雪", "Snow grains": "霧雪",
    "Slight rain showers": "弱いにわか雨", "Moderate rain showers": "にわか雨", "Violent rain showers": "激しいにわか雨",
    "Slight snow showers": "弱いにわか雪", "Heavy snow showers": "強いにわか雪", Thunderstorm: "雷雨",
    "Thunderstorm with slight hail": "雷雨（弱いひょう）", "Thunderstorm with heavy hail": "雷雨（強いひょう）",
  },
  zh: {
    "Clear sky": "晴", "Mainly clear": "大致晴朗", "Partly cloudy": "多云", Overcast: "阴", Fog: "雾",
    "Depositing rime fog": "雾凇", "Light drizzle": "小毛毛雨", "Moderate drizzle": "毛毛雨", "Dense drizzle": "浓毛毛雨",
    "Light freezing drizzle": "轻度冻毛毛雨", "Dense freezing drizzle": "浓冻毛毛雨", "Slight rain": "小雨",
    "Moderate rain": "中雨", "Heavy rain": "大雨", "Light freezing rain": "轻度冻雨", "Heavy freezing rain": "强冻雨",
    "Slight snow fall": "小雪", "Moderate snow fall": "中雪", "Heavy snow fall": "大雪", "Snow grains": "米雪",
    "Slight rain showers": "小阵雨", "Moderate rain showers": "阵雨", "Violent rain showers": "强阵雨",
    "Slight snow showers": "小阵雪", "Heavy snow showers": "强阵雪", Thunderstorm: "雷暴",
    "Thunderstorm with slight hail": "雷暴伴小冰雹", "Thunderstorm with heavy hail": "雷暴伴大冰雹",
  },
  ko: {
    "Clear sky": "맑음", "Mainly clear": "대체로 맑음", "Partly cloudy": "구름 조금", Overcast: "흐림", Fog: "안개",
    "Depositing rime fog": "서리 안개", "Light drizzle": "약한 이슬비", "Moderate drizzle": "이슬비", "Dense drizzle": "강한 이슬비",
    "Light freezing drizzle": "약한 어는 이슬비", "Dense freezing drizzle": "강한 어는 이슬비", "Slight rain": "약한 비",
    "Moderate rain": "비", "Heavy rain": "폭우", "Light freezing rain": "약한 어는 비", "Heavy freezing rain": "강한 어는 비",
    "Slight snow fall": "약한 눈", "Moderate snow fall": "눈", "Heavy snow fall": "폭설", "Snow grains": "쌀알눈",
    "Slight rain showers": "약한 소나기", "Moderate rain showers": "소나기", "Violent rain showers": "강한 소나기",
    "Slight snow showers": "약한 소낙눈", "Heavy snow showers": "강한 소낙눈", Thunderstorm: "뇌우",
    "Thunderstorm with slight hail": "약한 우박을 동반한 뇌우", "Thunderstorm with heavy hail": "강한 우박을 동반한 뇌우",
  },
};

export function weatherText(description) {
  const table = WX[currentLang()];
  return (table && table[description]) || description;
}
