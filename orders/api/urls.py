from django.urls import path

from . import views

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
]
