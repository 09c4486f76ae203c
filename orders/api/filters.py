import django_filters as filters

from ..models import Fill, Order
from ..selectors import open_orders_condition
from ..states import OrderStatus


class OrderFilter(filters.FilterSet):
    # distinct=False: status is a column of the order, so no row can repeat, and a DISTINCT
    # over every selected column makes PostgreSQL aggregate all of the account's orders of
    # that status before it can take the first page (docs/performance.md, Growth).
    status = filters.MultipleChoiceFilter(choices=OrderStatus.choices, distinct=False)
    open = filters.BooleanFilter(method="filter_open")
    symbol = filters.CharFilter(field_name="instrument__symbol")
    side = filters.CharFilter()
    account = filters.CharFilter(field_name="account__code")
    venue = filters.CharFilter()
    strategy_id = filters.CharFilter()
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    parent_id = filters.UUIDFilter(field_name="parent_id")

    class Meta:
        model = Order
        fields: list[str] = []

    def filter_open(self, queryset, name, value):
        """The statuses as literals (selectors.open_orders_condition): an account's open
        orders, newest first, are then a range of `order_open_account_created` read in order,
        however many orders the account has (docs/performance.md, Growth)."""
        if value is None:
            return queryset
        condition = open_orders_condition()
        return queryset.filter(condition) if value else queryset.exclude(condition)


class FillFilter(filters.FilterSet):
    account = filters.CharFilter(field_name="account__code")
    symbol = filters.CharFilter(field_name="instrument__symbol")
    order = filters.UUIDFilter(field_name="order_id")
    executed_after = filters.IsoDateTimeFilter(field_name="executed_at", lookup_expr="gte")
    executed_before = filters.IsoDateTimeFilter(field_name="executed_at", lookup_expr="lt")

    class Meta:
        model = Fill
        fields: list[str] = []
