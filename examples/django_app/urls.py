"""Views of the example Django project: ``/free`` and the paid ``/weather``."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path


def free(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"message": "this one is free"})


def weather(request: HttpRequest) -> JsonResponse:
    payment = request.x402_payment  # type: ignore[attr-defined]
    return JsonResponse({"forecast": "sunny", "paid_by": payment.payer, "amount": payment.amount})


urlpatterns = [path("free", free), path("weather", weather)]
