"""Durable calls: a function that runs once per key, whose recorded result replays after a crash."""

import lashstore

with lashstore.open("sqlite:///agent-store") as deployment:
    effects = deployment.effects
    calls = []

    @lashstore.durable(effects, scope=("turn", "chat-42/turn-7"), key=lambda city: f"weather:{city}")
    def fetch_weather(city: str) -> dict:
        calls.append(city)  # a real program calls a weather API here
        return {"city": city, "temp_c": 21}

    print(fetch_weather("Paris"))
    print(fetch_weather("Paris"))  # replayed from the store: the function does not run again
    print("the function ran", len(calls), "time(s) in this process")
    record = effects.get_effect(("turn", "chat-42/turn-7"), "weather:Paris")
    print("recorded:", record.status.value, record.outcome)
