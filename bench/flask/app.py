"""The Flask-Session way of the storefront, for `scripts/bench --peers`.

The same shop pages as the Rust server, written the way a Flask developer would:
Flask + Flask-Session with its Redis backend (server-side sessions, the cookie
holds only the session id), the cart in a Redis hash beside the session (field =
product id, value = quantity, HINCRBY like the shop), the products read from the
shop's own SQLite database, Jinja2 templates mirroring the shop's markup.

  GET /            catalog + cart badge (logged in: session GET + cart HGETALL)
  GET /cart        the cart's lines and total
  POST /cart/add   product_id, quantity: HINCRBY (capped at 99), flash, 303
  POST /cart/update product_id, quantity (0 removes), flash, 303
  POST /login      username, password (argon2 hash from the shop's users table)
  GET /readyz      plain "ready"

Settings (environment): STOREFRONT_DB (path of the shop's SQLite file),
REDIS_URL, SECRET_KEY. Run by gunicorn (see bench/run.py for the workers chosen).

Flask-Session's defaults are kept except two, both to match the shop: the cookie
is called `sid`, and SESSION_REFRESH_EACH_REQUEST is off, so pages that only read
do not write the session back (the shop writes it only for its idle refresh).
And like the shop's, the session keeps the last three flash messages only.
"""

import os
import sqlite3

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, abort, flash, get_flashed_messages, redirect, render_template, request, session
from flask_session import Session

MAX_QUANTITY = 99
CART_TTL = 30 * 86400


def load_products(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT id, slug, name, description, price_cents, image FROM products ORDER BY id").fetchall()
    db.close()
    return [dict(row) for row in rows]


def price(cents):
    return f"${cents // 100}.{cents % 100:02d}"


app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-secret"),
    SESSION_TYPE="redis",
    SESSION_REDIS=redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")),
    SESSION_KEY_PREFIX="flask:session:",
    SESSION_COOKIE_NAME="sid",
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    SESSION_REFRESH_EACH_REQUEST=False,
)
Session(app)
store = app.config["SESSION_REDIS"]
DB_PATH = os.environ["STOREFRONT_DB"]
PRODUCTS = load_products(DB_PATH)
BY_ID = {p["id"]: p for p in PRODUCTS}
hasher = PasswordHasher()


def cart_key():
    return f"flask:cart:user:{session['user_id']}"


def read_cart():
    """{product id: quantity} of the logged-in user's cart (one HGETALL)."""
    raw = store.hgetall(cart_key())
    return {int(k): int(v) for k, v in raw.items() if int(k) in BY_ID}


@app.context_processor
def chrome():
    return {"user": session.get("username"), "price": price}


def logged_in():
    if "user_id" not in session:
        abort(redirect("/login"))


@app.get("/")
def catalog():
    count = 0
    if "user_id" in session:
        count = sum(read_cart().values())
    return render_template("catalog.html", products=PRODUCTS, cart_count=count)


@app.get("/cart")
def cart():
    logged_in()
    lines = [(BY_ID[pid], qty) for pid, qty in sorted(read_cart().items())]
    total = sum(p["price_cents"] * q for p, q in lines)
    return render_template("cart.html", lines=lines, total=total, cart_count=sum(q for _, q in lines),
                           max_quantity=MAX_QUANTITY)


def form_ints():
    try:
        product = int(request.form.get("product_id", ""))
        quantity = int(request.form.get("quantity", "1"))
    except ValueError:
        abort(400)
    if product not in BY_ID or not 0 <= quantity <= MAX_QUANTITY:
        abort(400)
    return BY_ID[product], quantity


@app.post("/cart/add")
def cart_add():
    logged_in()
    product, quantity = form_ints()
    key = cart_key()
    pipe = store.pipeline(transaction=False)
    pipe.hincrby(key, product["id"], quantity)
    pipe.expire(key, CART_TTL)
    now, _ = pipe.execute()
    if now > MAX_QUANTITY:
        store.hset(key, product["id"], MAX_QUANTITY)
        flash(f"{product['name']}: the most you can order is {MAX_QUANTITY}.")
    else:
        flash(f"Added {product['name']} to your cart.")
    return see_cart()


def see_cart():
    """303 to the cart. Like the shop, the session keeps the last three flash
    messages, not every one since the last page was shown."""
    session["_flashes"] = session["_flashes"][-3:]
    return redirect("/cart", 303)


@app.post("/cart/update")
def cart_update():
    logged_in()
    product, quantity = form_ints()
    key = cart_key()
    if quantity == 0:
        store.hdel(key, product["id"])
        flash(f"Removed {product['name']}.")
    else:
        store.hset(key, product["id"], quantity)
        flash(f"{product['name']}: quantity {quantity}.")
    return see_cart()


@app.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", cart_count=0)
    username = request.form.get("username", "").strip().lower()
    password = request.form.get("password", "")
    db = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True)
    row = db.execute("SELECT id, password_hash FROM users WHERE username = ?", (username,)).fetchone()
    db.close()
    try:
        ok = row is not None and hasher.verify(row[1], password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        flash("Wrong username or password.")
        return render_template("login.html", cart_count=0), 401
    session.clear()
    app.session_interface.regenerate(session)
    session["user_id"], session["username"] = row[0], username
    return redirect("/", 303)


@app.get("/readyz")
def readyz():
    return "ready\n", 200, {"Content-Type": "text/plain"}
