from django.urls import path

from . import views

urlpatterns = [
    path("limits/", views.LimitListCreateView.as_view(), name="risk-limits"),
    path("limits/<int:limit_id>/", views.LimitDetailView.as_view(), name="risk-limit"),
    path("state/", views.TradingStateView.as_view(), name="risk-state"),
    path("halt/", views.HaltView.as_view(), name="risk-halt"),
    path("resume/", views.ResumeView.as_view(), name="risk-resume"),
    path("events/", views.RiskEventListView.as_view(), name="risk-events"),
]
