from rest_framework.pagination import CursorPagination


class NewestFirst(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class OldestFirstBySeq(NewestFirst):
    ordering = ("seq",)


class NewestFillFirst(NewestFirst):
    ordering = ("-executed_at", "-id")
