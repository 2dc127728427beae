"""The weather tool: current weather for a city from Open-Meteo or OpenWeatherMap."""
