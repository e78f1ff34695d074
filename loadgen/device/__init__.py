"""One phone: its identity and capability profile, its life loop, its policy life, its Autodiscover step."""
