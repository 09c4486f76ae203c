from django.urls import path

from . import books, views
from .reconciliation import ReconciliationRunListView

urlpatterns = [
    path("orders/", views.OrderListCreateView.as_view(), name="order-list"),
    path("orders/batch/", views.OrderBatchView.as_view(), name="order-batch"),
    path("orders/cancel-all/", views.OrderCancelAllView.as_view(), name="order-cancel-all"),
    path(
        "orders/by-client-id/<str:client_order_id>/",
        views.OrderByClientIdView.as_view(),
        name="order-by-client-id",
    ),
    path("orders/<uuid:order_id>/", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/cancel/", views.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<uuid:order_id>/events/", views.OrderEventsView.as_view(), name="order-events"),
    path("fills/", views.FillListView.as_view(), name="fill-list"),
    path("reconciliation/", ReconciliationRunListView.as_view(), name="reconciliation"),
    path("positions/", books.PositionListView.as_view(), name="position-list"),
    path("accounts/", books.AccountListView.as_view(), name="account-list"),
    path("accounts/<str:code>/", books.AccountDetailView.as_view(), name="account-detail"),
]
