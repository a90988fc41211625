from typing import Any


def routes(web: Any, router: Any) -> None:
    return None
