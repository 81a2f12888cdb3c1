"""Every shape of a record that TestIO documents or sends is typed; only what cannot be is rejected.

These tests go through ``parse_records`` (what the client does with a page), so a shape
that fails lands in ``rejected`` with its reason, exactly as in a sync.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from testio_pipeline.domain.records import (
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    UserStory,
    raw_id,
)
from testio_pipeline.testio.client import parse_records

UTC = timezone.utc


def one(model, item, **context):
    """The record typed from ``item``; fails with the rejection reason if it was rejected."""
    parsed = parse_records(model, [item], entity=model.__name__, **context)
    assert not parsed.rejected, parsed.rejected[0].reason
    return parsed.records[0]


def reason(model, item, **context) -> str:
    """The rejection reason of ``item`` (which must be rejected)."""
    parsed = parse_records(model, [item], entity=model.__name__, **context)
    assert not parsed.records, f"{item!r} was accepted"
    return parsed.rejected[0].reason


DEPLOYED_BUG = {
    "id": 501,
    "title": "Cart: button does nothing",
    "severity": "high",
    "status": "accepted",
    "auto_accepted": False,
    "known": False,
    "steps": ["Open the cart", "Tap Pay"],
    "actual_result": "Nothing happens.",
    "expected_result": "The payment starts.",
    "reported_at": "2026-10-01T10:00:00+02:00",
    "exported_at": None,
    "author": {"name": "tester"},
    "test": {"id": 77, "title": "Coverage test"},
    "test_feature": {"id": 9001},
    "feature": {"id": 301, "title": "Cart"},
    "language": "en",
    "location": "https://shop.example/cart",
}


# --- bugs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps,expected",
    [
        (["Open the cart", "Tap Pay"], ["Open the cart", "Tap Pay"]),  # the deployed API
        ("Open the cart\nTap Pay", ["Open the cart", "Tap Pay"]),  # the API description
        ("Open the cart\r\n\r\n  Tap Pay  \n\n", ["Open the cart", "Tap Pay"]),  # CRLF, blank lines
        ("Open the cart", ["Open the cart"]),  # one line: one step
        ("", []),
        ("  \n ", []),
        (None, []),
        ([], []),
    ],
)
def test_bug_steps_come_as_a_list_a_string_or_null(steps, expected):
    assert one(Bug, {**DEPLOYED_BUG, "steps": steps}).steps == expected


def test_the_description_s_older_bug_without_status_auto_accepted_and_reported_at():
    old = {k: v for k, v in DEPLOYED_BUG.items() if k not in ("status", "auto_accepted", "reported_at")}
    old["steps"] = "Open the cart\nTap Pay"
    bug = one(Bug, old, product_id=5)
    assert (bug.id, bug.test_id, bug.product_id) == (501, 77, 5)
    assert (bug.status, bug.auto_accepted, bug.reported_at) == (None, None, None)
    assert bug.steps == ["Open the cart", "Tap Pay"]


def test_bug_ids_as_numeric_strings_and_null_optional_objects():
    bug = one(
        Bug,
        {
            **DEPLOYED_BUG,
            "id": "501",
            "test": {"id": " 77 ", "title": "t"},
            "test_feature": {"id": "9001"},
            "feature": {"id": "301"},
        },
    )
    assert (bug.id, bug.test_id, bug.test_feature_id, bug.feature_id) == (501, 77, 9001, 301)
    bug = one(Bug, {**DEPLOYED_BUG, "feature": None, "test_feature": None, "author": None})
    assert (bug.feature_id, bug.test_feature_id, bug.author_name) == (None, None, None)
    bug = one(Bug, {k: v for k, v in DEPLOYED_BUG.items() if k not in ("feature", "test_feature", "author")})
    assert (bug.feature_id, bug.test_feature_id, bug.author_name) == (None, None, None)


def test_bug_null_booleans_empty_dates_and_numbers_for_text():
    bug = one(
        Bug,
        {
            **DEPLOYED_BUG,
            "known": None,
            "auto_accepted": None,
            "exported_at": "",
            "reported_at": "2026-10-01T08:00:00Z",
            "title": 404,
            "actual_result": 1.5,
            "author": {"name": 1234},
        },
    )
    assert (bug.known, bug.auto_accepted, bug.exported_at) == (None, None, None)
    assert bug.reported_at == datetime(2026, 10, 1, 8, tzinfo=UTC)
    assert (bug.title, bug.actual_result, bug.author_name) == ("404", "1.5", "1234")
    assert one(Bug, {**DEPLOYED_BUG, "known": "true", "auto_accepted": 0}).known is True


@pytest.mark.parametrize(
    "change,field",
    [
        ({"id": None}, "id"),
        ({"id": "B-501"}, "id"),
        ({"test": None}, "test.id"),
        ({"test": {"title": "no id"}}, "test.id"),
        ({"test": {"id": "seventy-seven"}}, "test.id"),
        ({"feature": {"id": "cart"}}, "feature.id"),
        ({"reported_at": "next tuesday"}, "reported_at"),
        ({"exported_at": "2026-13-45"}, "exported_at"),
        ({"steps": {"1": "click"}}, "steps"),
        ({"steps": [["nested"]]}, "steps.0"),
        ({"title": ["a", "list"]}, "title"),
        ({"known": {"yes": "please"}}, "known"),
    ],
)
def test_what_cannot_be_typed_is_rejected_with_the_field_named(change, field):
    item = {**DEPLOYED_BUG, **change}
    if change == {"id": None}:
        del item["id"]
    assert reason(Bug, item).startswith(f"{field}: ")


# --- tests ---------------------------------------------------------------------------------


DEPLOYED_TEST = {
    "id": 77,
    "title": "Coverage test of the cart",
    "test_title": "Coverage test of the cart",
    "status": "running",
    "review_status": "review_successful",
    "testing_type": "coverage",
    "goal": "**Find** bugs in the cart",
    "goal_text": "Find bugs in the cart",
    "instructions": "Use the *staging* shop",
    "instructions_text": "Use the staging shop",
    "out_of_scope": "Payments",
    "out_of_scope_text": "Payments",
    "enable_low": True,
    "enable_high": True,
    "enable_critical": True,
    "start_at": "2026-10-01T10:00:00+02:00",
    "end_at": "2026-10-03T10:00:00+02:00",
    "created_by": "ann.lead",
    "submitted_by": None,
    "test_environment": {"id": 90001, "title": "Staging", "url": "https://staging.example", "password": "pw"},
    "requirements": [{"category": {"id": 1, "name": "Computers"}, "vendor": None, "max_operating_system_version": None}],
    "features": [
        {"id": 40001, "feature_id": 301, "title": "Cart", "user_stories": ["Cart: pay"],
         "enable_default": True, "enable_content": None, "enable_visual": False},
    ],
    "section": {"id": 60001, "name": "Checkout", "connection": None},
    "product": {"id": 20003, "name": "Shop"},
}


@pytest.mark.parametrize(
    "keep",
    [
        ("title", "goal", "instructions", "out_of_scope"),  # one name of each pair
        ("test_title", "goal_text", "instructions_text", "out_of_scope_text"),  # the other
    ],
)
def test_a_test_carries_either_or_both_names_of_its_paired_fields(keep):
    pairs = {"title", "test_title", "goal", "goal_text", "instructions", "instructions_text",
             "out_of_scope", "out_of_scope_text"}
    item = {k: v for k, v in DEPLOYED_TEST.items() if k not in pairs or k in keep}
    test = one(ExploratoryTest, item)
    assert test.title == "Coverage test of the cart"
    assert test.goal in ("**Find** bugs in the cart", "Find bugs in the cart")
    assert test.instructions and test.out_of_scope == "Payments"
    both = one(ExploratoryTest, DEPLOYED_TEST)
    assert both.goal == "**Find** bugs in the cart", "with both, the Markdown one is kept"


def test_test_ids_as_strings_nulls_and_empty_dates():
    item = {
        **DEPLOYED_TEST,
        "id": "77",
        "product": {"id": "20003"},
        "section": {"id": "60001", "name": "Checkout"},
        "test_environment": {"id": "90001", "title": "Staging"},
        "features": [{"id": "40001", "feature_id": "301", "enable_content": None, "enable_default": None}],
        "enable_low": None,
        "submitted_by": None,
        "title": 2026,
        "test_title": 2026,
    }
    test = one(ExploratoryTest, item)
    assert (test.id, test.product_id, test.section_id, test.test_environment.id) == (77, 20003, 60001, 90001)
    assert [(f.id, f.feature_id, f.enable_content, f.enable_default) for f in test.features] == [
        (40001, 301, None, None)
    ]
    assert (test.enable_low, test.title) == (None, "2026")
    nulls = one(
        ExploratoryTest,
        {**DEPLOYED_TEST, "section": None, "test_environment": None, "features": None, "end_at": "", "start_at": None},
        product_id=20003,
    )
    assert (nulls.section_id, nulls.section_name, nulls.test_environment, nulls.features) == (None, None, None, [])
    assert (nulls.start_at, nulls.end_at) == (None, None)
    assert one(ExploratoryTest, {**DEPLOYED_TEST, "product": None}, product_id=5).product_id == 5


@pytest.mark.parametrize(
    "change,field",
    [
        ({"id": "T-77"}, "id"),
        ({"product": {"id": "shop"}}, "product.id"),
        ({"product": None}, "product_id"),
        ({"section": {"id": "checkout"}}, "section.id"),
        ({"end_at": "next tuesday"}, "end_at"),
        ({"enable_low": {"yes": "please"}}, "enable_low"),
        ({"features": [{"feature_id": 301}]}, "features.0.id"),
        ({"status": None}, "status"),
    ],
)
def test_a_test_that_cannot_be_typed_is_rejected_with_the_field_named(change, field):
    assert reason(ExploratoryTest, {**DEPLOYED_TEST, **change}).startswith(f"{field}: ")


# --- products, features, user stories ------------------------------------------------------


def test_products_features_and_stories_with_string_ids_null_lists_and_numbers_for_text():
    product = one(
        Product,
        {
            "id": "20003",
            "name": 2048,
            "type": "gaming",
            "default_section_id": "60000",
            "sections": None,
            "sections_with_default": [{"id": "60000", "name": "Default"}],
        },
    )
    assert (product.id, product.name, product.default_section_id, product.has_sections) == (20003, "2048", 60000, False)
    sectioned = one(Product, {"id": 1, "name": "P", "sections": [{"id": "11", "name": 7}], "sections_with_default": None})
    assert (sectioned.section_ids, sectioned.sections[0].name) == ([11], "7")
    feature = one(Feature, {"id": "301", "title": "Cart", "user_stories": None, "description": None}, product_id=5)
    assert (feature.id, feature.user_stories) == (301, [])
    story = one(UserStory, {"id": "2001", "title": 42, "path": None}, product_id=5)
    assert (story.id, story.title) == (2001, "42")
    assert reason(Product, {"id": "p-1", "name": "P"}).startswith("id: ")
    assert reason(Feature, {"id": 1, "title": None}, product_id=5).startswith("title: ")
    assert reason(UserStory, {"title": "no id"}, product_id=5).startswith("id: ")


def test_raw_ids_are_read_like_the_records_read_them():
    assert [raw_id(x) for x in ({"id": 5}, {"id": "5"}, {"id": " 5 "}, {"id": "x"}, {"id": True}, {}, None, [])] == [
        5, 5, 5, None, None, None, None, None
    ]
