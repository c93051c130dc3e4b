"""Hand-picked hard cases for tokenizer exactness tests: each line exercises a different branch of the patterns."""

VARIED = [
    "Hello, world! It's a test of GPT-2's tokenizer; they're here, we've done it, I'd say, you'll see, I'm sure.",
    "DON'T SHOUT. She'S fine? 'tis the season.",
    "def f(x):\n\treturn x  +  1\n\n\n        # eight spaces then a comment\n\t\t\tx = [1,2,3]\n",
    "    \n    \n\n\n\t \t  trailing spaces   ",
    " " * 200 + "x" + "\t" * 50 + "\n" * 30,
    "价格是 12345678 元。日本語のテキスト、한국어 텍스트。",
    "emoji: 🎉🎉 👩‍👩‍👧‍👦 🇫🇷 ✔︎ and ZWJ sequences",
    "combining marks: e\u0301 a\u0308 n\u0303 \u1e9b\u0323 Å vs A\u030a",
    "numbers 1 12 123 1234 12345 3.14159 1e-10 0xDEADBEEF 1_000_000 ١٢٣ ½",
    "mixed: αβγ Привет мир 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u200b zero\u200bwidth \ufeffBOM",
    "<|endoftext|> in the middle <|endoftext|><|endoftext|> and at the end<|endoftext|>",
    "almost special: <|endoftext| <endoftext|> <|ENDOFTEXT|>",
    "URL https://example.com/a/b?c=d&e=f#g and e-mail someone@example.org",
    "",
    "\r\n\r\nwindows\r\nline endings\r\n",
    "=" * 300 + "\n" + "-" * 77,
]
