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
        {"name": "Desktop PC", "os": "Windows", "os_version": "11", "browser": "Chrome"},
        {"name": "Desktop PC", "os": "Windows", "os_version": "10", "browser": "Edge"},
        {"name": "MacBook Pro", "os": "macOS", "os_version": "14", "browser": "Safari"},
        {"name": "ThinkPad", "os": "Ubuntu", "os_version": "22.04", "browser": "Firefox"},
    ),
    "ios": (
        {"name": "iPhone 15", "os": "iOS", "os_version": "17.4", "browser": None},
        {"name": "iPhone 13 mini", "os": "iOS", "os_version": "16.7", "browser": None},
        {"name": "iPad Air", "os": "iPadOS", "os_version": "17.2", "browser": None},
    ),
    "android": (
        {"name": "Samsung Galaxy S23", "os": "Android", "os_version": "14", "browser": None},
        {"name": "Google Pixel 7", "os": "Android", "os_version": "14", "browser": None},
        {"name": "Xiaomi Redmi Note 12", "os": "Android", "os_version": "13", "browser": None},
    ),
    "windows": (
        {"name": "Surface Pro 9", "os": "Windows", "os_version": "11", "browser": None},
        {"name": "Dell XPS 13", "os": "Windows", "os_version": "10", "browser": None},
    ),
    "tv": (
        {"name": "Fire TV Stick 4K", "os": "Fire OS", "os_version": "7", "browser": None},
        {"name": "Apple TV 4K", "os": "tvOS", "os_version": "17", "browser": None},
        {"name": "Samsung Smart TV", "os": "Tizen", "os_version": "7.0", "browser": None},
    ),
    "console": (
        {"name": "PlayStation 5", "os": "PS5 System Software", "os_version": "24.01", "browser": None},
        {"name": "Xbox Series X", "os": "Xbox OS", "os_version": "10.0", "browser": None},
        {"name": "Nintendo Switch", "os": "Horizon", "os_version": "17.0", "browser": None},
    ),
}

# Which device pools a product type is tested on (first entry is the main one).
TYPE_DEVICE_POOLS = {
    "website": ("desktop", "ios", "android"),
    "mobile_app_ios": ("ios",),
    "mobile_app_android": ("android",),
    "mobile_app_windows": ("windows",),
    "streaming_app": ("tv",),
    "gaming": ("console", "desktop"),
}

REQUIREMENT_CATEGORIES = {
    "desktop": "Computers",
    "ios": "Smartphones",
    "android": "Smartphones",
    "windows": "Computers",
    "tv": "Streaming devices",
    "console": "Game consoles",
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
