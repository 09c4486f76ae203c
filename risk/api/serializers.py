from rest_framework import serializers

from ..models import RiskEvent, RiskLimit, Scope, TradingMode, TradingState


class LimitSerializer(serializers.ModelSerializer):
    value = serializers.DecimalField(max_digits=28, decimal_places=10, coerce_to_string=True)
    symbols = serializers.ListField(child=serializers.CharField(max_length=32), required=False)

    class Meta:
        model = RiskLimit
        fields = [
            "id",
            "scope",
            "target",
            "rule",
            "value",
            "symbols",
            "active",
            "note",
            "updated_by",
            "updated_at",
        ]
        read_only_fields = ["id", "updated_by", "updated_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["value"] = format(instance.value.normalize(), "f")
        return data

    def validate(self, attrs):
        scope = attrs.get("scope", getattr(self.instance, "scope", None))
        target = attrs.get("target", getattr(self.instance, "target", ""))
        if scope == Scope.GLOBAL and target:
            raise serializers.ValidationError({"target": ["must be empty for scope global"]})
        if scope != Scope.GLOBAL and not target:
            raise serializers.ValidationError({"target": [f"required for scope {scope}"]})
        value = attrs.get("value")
        if value is not None and value < 0:
            raise serializers.ValidationError({"value": ["must not be negative"]})
        return attrs


class TradingStateSerializer(serializers.ModelSerializer):
    class Meta:
        model = TradingState
        fields = ["scope", "target", "mode", "reason", "changed_by", "changed_at"]


class HaltInputSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=Scope.choices)
    target = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    reason = serializers.CharField(max_length=500)
    mode = serializers.ChoiceField(
        choices=[TradingMode.HALTED, TradingMode.REDUCING], default=TradingMode.HALTED
    )
    cancel_open_orders = serializers.BooleanField(default=False)
    flatten = serializers.BooleanField(default=False)


class ResumeInputSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=Scope.choices)
    target = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    reason = serializers.CharField(max_length=500)


class RiskEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RiskEvent
        fields = [
            "id",
            "at",
            "kind",
            "actor",
            "scope",
            "target",
            "account",
            "order_id",
            "reason",
            "correlation_id",
            "data",
        ]
