"""Word lists the fake world draws its names and texts from."""

from __future__ import annotations

PRODUCT_TYPES = (
    "website",
    "mobile_app_ios",
    "mobile_app_android",
    "mobile_app_windows",
    "streaming_app",
    "gaming",
)

TYPE_LABELS = {
    "website": "Web",
    "mobile_app_ios": "iOS",
    "mobile_app_android": "Android",
    "mobile_app_windows": "Windows",
    "streaming_app": "TV",
    "gaming": "Game",
}

BRANDS = (
    "Nordwind", "Alpenglow", "Brightpath", "Cobalt", "Driftwood", "Emberly", "Fjordline",
    "Greenleaf", "Harborview", "Ironbark", "Juniper", "Kestrel", "Lumen", "Meridian",
    "Northstar", "Orchard", "Pinecrest", "Quartz", "Riverbend", "Saltmarsh", "Tidewater",
    "Umbra", "Vantage", "Willowby", "Yellowfin", "Zephyr", "Acorn", "Bluebird", "Cedar",
    "Dovetail", "Evergreen", "Foxglove", "Granite", "Heron", "Indigo", "Jasper", "Kinfolk",
    "Larkspur", "Mosaic", "Nimbus",
)

PRODUCT_KINDS = (
    "Shop", "Banking", "Travel", "Insurance", "Health", "News", "Music", "Video", "Fitness",
    "Food Delivery", "Mobility", "Learning", "Marketplace", "Energy", "Telecom", "Ticketing",
)

SECTION_NAMES = (
    "Storefront", "Checkout", "Customer Account", "Admin Console", "Partner Portal",
    "Onboarding", "Support Center", "Loyalty Program", "Content Hub", "Reporting",
)

FEATURE_AREAS = (
    "Login", "Registration", "Password reset", "Two-factor authentication", "Home screen",
    "Search", "Search filters", "Product details", "Product reviews", "Wishlist",
    "Shopping cart", "Checkout", "Payment", "Vouchers", "Order history", "Order tracking",
    "Returns", "Invoices", "Profile settings", "Address book", "Notifications",
    "Newsletter", "Push messages", "Chat support", "Help center", "Store locator",
    "Booking calendar", "Seat selection", "Boarding pass", "Loyalty points", "Referral program",
    "Subscriptions", "Media player", "Playlists", "Downloads", "Parental controls",
    "Leaderboards", "Achievements", "In-app purchases", "Friends list", "Dark mode",
    "Accessibility", "Language switch", "Cookie consent", "Account deletion", "Data export",
    "Dashboard", "Reports", "User management", "Permissions", "Audit log", "Onboarding tour",
    "Feedback form", "Ratings", "Map view", "Route planner", "Price alerts", "Gift cards",
)

FEATURE_QUALIFIERS = (
    "mobile", "desktop", "guest", "premium", "legacy", "beta", "B2B", "express", "kiosk", "tablet",
)

STORY_ACTIONS = (
    "open the screen from the main menu",
    "see an error message for invalid input",
    "submit the form with valid data",
    "cancel and return to the previous step",
    "see a confirmation after saving",
    "use it after switching the language",
    "use it in landscape orientation",
    "reach it from a deep link",
    "use it with a screen reader",
    "see my changes after a restart",
    "continue after losing the connection",
    "undo my last change",
    "sort the results",
    "filter the results",
    "share the result by e-mail",
    "print the page",
    "see prices in my currency",
    "get a notification when it is done",
    "use it without an account",
    "see the empty state",
)

TESTING_TYPES = ("coverage", "focused", "rapid", "usability", "external", None)
TESTING_TYPE_WEIGHTS = (35, 20, 15, 10, 5, 15)

TEST_TITLE_PATTERNS = (
    "{kind} test: {area} before release {release}",
    "{area} regression ({release})",
    "{kind} check of {area}",
    "Release {release}: {area}",
    "{area} on new devices",
    "Smoke test {release} - {area}",
)

GOALS = (
    "Find functional bugs in {area} before release {release}.",
    "Verify that {area} works end to end for new and returning users.",
    "Check {area} after the redesign; focus on layout and content problems.",
    "Make sure nothing in {area} broke with release {release}.",
)

INSTRUCTIONS = (
    "Use the test account from the environment notes. Go through every step of {area} and report anything unexpected.",
    "Start from the home screen, then open {area}. Try valid and invalid input and different network conditions.",
    "Focus on {area}. Please attach a screen recording to every functional bug.",
    "Test {area} in at least two languages. Include device and OS version in every report.",
)

OUT_OF_SCOPE = (
    "Performance, load and security testing.",
    "Known issues listed in the release notes.",
    "Third-party payment pages and anything behind the partner login.",
    "Spelling in legal texts; they are being rewritten.",
    None,
)

CUSTOMER_FIRST = ("anna", "ben", "carla", "david", "elena", "felix", "greta", "hannes", "ines", "jonas", "kim", "lena")
CUSTOMER_LAST = ("schmidt", "meyer", "weber", "novak", "rossi", "berg", "lund", "costa", "dubois", "kaya")

TESTER_NAMES = (
    "Maria G.", "Tomasz K.", "Aisha B.", "Lucas P.", "Priya R.", "Jonas W.", "Sofia M.",
    "Mateo L.", "Yuki T.", "Olumide A.", "Elif S.", "Dmitri V.", "Chloe D.", "Rahul N.",
    "Fatima Z.", "Kenji O.", "Ana C.", "Peter H.", "Leila F.", "Marco B.",
)

BUG_PROBLEMS = (
    "button does nothing",
    "app crashes",
    "error message is cut off",
    "wrong price is shown",
    "text overlaps the image",
    "page stays blank",
    "spinner never stops",
    "data is lost",
    "translation is missing",
    "layout breaks",
    "link leads to a 404 page",
    "keyboard covers the input field",
    "duplicate entries appear",
    "total is not updated",
)

BUG_TRIGGERS = (
    "after tapping Save",
    "when switching to landscape",
    "on the second attempt",
    "after going back",
    "with a long name",
    "when offline",
    "after login",
    "with an empty cart",
    "in dark mode",
    "after changing the language",
)

STEP_TEMPLATES = (
    "Open {location}",
    "Log in with the test account",
    "Navigate to {area}",
    "Enter valid data in all fields",
    "Tap the primary button",
    "Rotate the device",
    "Go back with the system back button",
    "Reload the page",
    "Switch the language to German",
    "Observe the result",
)

COMMENT_BODIES = (
    "Reproduced on a second device.",
    "Could you add a screen recording, please?",
    "This is expected behaviour, see the test instructions.",
    "Thanks, forwarded to the development team.",
    "Duplicate of an earlier report in this test.",
    "Fixed in the next build.",
)

LANGUAGES = ("en", "en", "en", "de", "fr", "es", "it", "nl")

TZ_OFFSETS_MINUTES = (0, 60, 120, -300, -240, 330, -480, 540)

DEVICES = {
    "desktop": (
        {"name": "Desktop PC", "vendor": "Dell", "category": "Computers", "os": "Windows", "os_version": "11", "browser": "Chrome"},
        {"name": "Desktop PC", "vendor": "HP", "category": "Computers", "os": "Windows", "os_version": "10", "browser": "Edge"},
        {"name": "MacBook Pro", "vendor": "Apple", "category": "Computers", "os": "macOS", "os_version": "14", "browser": "Safari"},
        {"name": "ThinkPad", "vendor": "Lenovo", "category": "Computers", "os": "Ubuntu", "os_version": "22.04", "browser": "Firefox"},
    ),
    "ios": (
        {"name": "iPhone 15", "vendor": "Apple", "category": "Smartphones", "os": "iOS", "os_version": "17.4", "browser": None},
        {"name": "iPhone 13 mini", "vendor": "Apple", "category": "Smartphones", "os": "iOS", "os_version": "16.7", "browser": None},
        {"name": "iPad Air", "vendor": "Apple", "category": "Tablets", "os": "iPadOS", "os_version": "17.2", "browser": None},
    ),
    "android": (
        {"name": "Samsung Galaxy S23", "vendor": "Samsung", "category": "Smartphones", "os": "Android", "os_version": "14", "browser": None},
        {"name": "Google Pixel 7", "vendor": "Google", "category": "Smartphones", "os": "Android", "os_version": "14", "browser": None},
        {"name": "Xiaomi Redmi Note 12", "vendor": "Xiaomi", "category": "Smartphones", "os": "Android", "os_version": "13", "browser": None},
    ),
    "windows": (
        {"name": "Surface Pro 9", "vendor": "Microsoft", "category": "Tablets", "os": "Windows", "os_version": "11", "browser": None},
        {"name": "Dell XPS 13", "vendor": "Dell", "category": "Computers", "os": "Windows", "os_version": "10", "browser": None},
    ),
    "tv": (
        {"name": "Fire TV Stick 4K", "vendor": "Amazon", "category": "Streaming devices", "os": "Fire OS", "os_version": "7", "browser": None},
        {"name": "Apple TV 4K", "vendor": "Apple", "category": "Streaming devices", "os": "tvOS", "os_version": "17", "browser": None},
        {"name": "Samsung Smart TV", "vendor": "Samsung", "category": "Streaming devices", "os": "Tizen", "os_version": "7.0", "browser": None},
    ),
    "console": (
        {"name": "PlayStation 5", "vendor": "Sony", "category": "Game consoles", "os": "PS5 System Software", "os_version": "24.01", "browser": None},
        {"name": "Xbox Series X", "vendor": "Microsoft", "category": "Game consoles", "os": "Xbox OS", "os_version": "10.0", "browser": None},
        {"name": "Nintendo Switch", "vendor": "Nintendo", "category": "Game consoles", "os": "Horizon", "os_version": "17.0", "browser": None},
    ),
}

# Browsers a tester with a computer may also have used (a bug names one to three).
EXTRA_BROWSERS = ("Chrome", "Firefox", "Edge", "Safari")

# Which device pools a product type is tested on (first entry is the main one).
TYPE_DEVICE_POOLS = {
    "website": ("desktop", "ios", "android"),
    "mobile_app_ios": ("ios",),
    "mobile_app_android": ("android",),
    "mobile_app_windows": ("windows",),
    "streaming_app": ("tv",),
    "gaming": ("console", "desktop"),
}

ENVIRONMENT_NAMES = ("Staging", "Pre-production", "QA", "Release candidate")

ACCESS_NOTES = (
    "VPN profile 'testio-{slug}', one-time code {code}",
    "HTTP basic auth realm 'staging' (same credentials)",
    "Test credit card 4111 1111 1111 1111, CVC {code3}, any future date",
    "Invite code {code} for the beta build",
    "TestFlight invite via the link in the instructions, PIN {code}",
)

SEVERITIES = ("low", "high", "visual", "content", "critical", "custom")
SEVERITY_WEIGHTS = (35, 25, 15, 10, 8, 7)

# Stable ids of the names the API sends as {id, name} objects.
def _ids(names, base):
    return {name: base + i for i, name in enumerate(dict.fromkeys(names))}


CATEGORY_IDS = _ids((d["category"] for pool in DEVICES.values() for d in pool), 1)
VENDOR_IDS = _ids((d["vendor"] for pool in DEVICES.values() for d in pool), 100)
OS_IDS = _ids((d["os"] for pool in DEVICES.values() for d in pool), 200)
DEVICE_IDS = _ids((d["name"] for pool in DEVICES.values() for d in pool), 500)
OS_VERSION_IDS = _ids((f"{d['os']} {d['os_version']}" for pool in DEVICES.values() for d in pool), 1000)
BROWSER_IDS = _ids((*EXTRA_BROWSERS, *(d["browser"] for pool in DEVICES.values() for d in pool if d["browser"])), 300)

# The customer's rejection reasons as ``bugs/reject_reasons`` serves them: (key, name, the
# comment TestIO posts on the bug when the customer rejects it for that reason), with how
# often customers pick each.
REJECT_REASONS = (
    ("known_bug", "Known bug", "Rejected - this is a legit bug but already known."),
    ("not_reproducible", "Not reproducible", "Rejected - with the information provided it was not possible to reproduce this bug."),
    ("intended_behavior", "Intended behaviour", "Rejected - the behaviour/design described here is intentional."),
    ("irrelevant", "Irrelevant", "Rejected - this bug is not relevant and will not be fixed."),
    ("device_not_relevant", "Device not relevant", "Rejected - this device is not relevant and the bug will not be fixed."),
    ("ignored_instructions", "Instructions ignored", "Rejected - the test instructions were not followed."),
)
REJECT_REASON_WEIGHTS = (30, 22, 18, 10, 6, 6)
# TestIO rejects a bug itself when the tester does not answer a customer's question in time;
# that reason is not one of the customer's.
REQUEST_TIMEOUT_COMMENT = (
    "Your bug was rejected automatically, because you didn't respond to the request within 24 hours."
)
REQUEST_TIMEOUT_SHARE = 0.05
# Rejected bugs whose comments carry no standard reason (rejected before reasons existed, or
# the customer wrote their own text): the pipeline calls their reason "other".
UNEXPLAINED_REJECTION_SHARE = 0.04
CUSTOMER_REJECTION_NOTES = (
    "We will not fix this in the current release.",
    "Please check the test instructions again.",
    "Same as the crash reported yesterday.",
    "Only happens on a build we no longer support.",
)
UNEXPLAINED_REJECTIONS = ("Not a bug for us.", "Closed, see internal ticket.")

# How a bug's devices vary: a second device, a second browser, an OS version on the device.
SECOND_DEVICE_SHARE = 0.15
SECOND_BROWSER_SHARE = 0.3
DEVICE_OS_VERSION_SHARE = 0.7
# A test's requirement names a highest OS version this often (else: any newer one).
MAX_OS_VERSION_SHARE = 0.5

# Custom report fields some customers configure ("report.content.data" on a bug).
REPORT_FIELDS = (
    ("App version", ("4.2.0", "4.2.1", "4.3.0-beta")),
    ("Build number", ("1812", "1815", "1820")),
    ("Account type", ("free", "premium", "business")),
    ("Reproducibility", ("always", "sometimes", "once")),
)
REPORT_FIELD_SHARE = 0.3
