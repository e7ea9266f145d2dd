"""A correct and a wrong solution for each of the 25 problems of the packaged code suite, written
for the tests (the dataset ships no reference solutions). Each wrong one fails at least one of the
problem's tests: a near miss (off by one, wrong rounding, case-sensitive, no None case) rather
than nonsense, so the grader has to run the tests to tell them apart."""

RIGHT: dict[str, str] = {
    "HumanEval/81": '''
def numerical_letter_grade(grades):
    table = [(3.7, "A"), (3.3, "A-"), (3.0, "B+"), (2.7, "B"), (2.3, "B-"), (2.0, "C+"),
             (1.7, "C"), (1.3, "C-"), (1.0, "D+"), (0.7, "D"), (0.0, "D-")]
    letters = []
    for gpa in grades:
        if gpa == 4.0:
            letters.append("A+")
            continue
        letters.append(next((letter for bound, letter in table if gpa > bound), "E"))
    return letters
''',
    "HumanEval/94": '''
def skjkasdkd(lst):
    def is_prime(n):
        if n < 2:
            return False
        i = 2
        while i * i <= n:
            if n % i == 0:
                return False
            i += 1
        return True
    largest = max((n for n in lst if is_prime(n)), default=0)
    return sum(int(d) for d in str(largest))
''',
    "HumanEval/61": '''
def correct_bracketing(brackets: str):
    depth = 0
    for b in brackets:
        depth += 1 if b == "(" else -1
        if depth < 0:
            return False
    return depth == 0
''',
    "HumanEval/162": '''
import hashlib

def string_to_md5(text):
    return hashlib.md5(text.encode("ascii")).hexdigest() if text else None
''',
    "HumanEval/54": '''
def same_chars(s0: str, s1: str):
    return set(s0) == set(s1)
''',
    "HumanEval/108": '''
def count_nums(arr):
    def signed_digit_sum(n):
        digits = [int(d) for d in str(abs(n))]
        if n < 0:
            digits[0] = -digits[0]
        return sum(digits)
    return sum(1 for n in arr if signed_digit_sum(n) > 0)
''',
    "HumanEval/3": '''
from typing import List

def below_zero(operations: List[int]) -> bool:
    balance = 0
    for op in operations:
        balance += op
        if balance < 0:
            return True
    return False
''',
    "HumanEval/90": '''
def next_smallest(lst):
    values = sorted(set(lst))
    return values[1] if len(values) > 1 else None
''',
    "HumanEval/16": '''
def count_distinct_characters(string: str) -> int:
    return len(set(string.lower()))
''',
    "HumanEval/79": '''
def decimal_to_binary(decimal):
    return "db" + bin(decimal)[2:] + "db"
''',
    "HumanEval/138": '''
def is_equal_to_sum_even(n):
    return n % 2 == 0 and n >= 8
''',
    "HumanEval/99": '''
import math

def closest_integer(value):
    number = float(value)
    whole = math.floor(abs(number) + 0.5)
    return int(whole if number >= 0 else -whole)
''',
    "HumanEval/157": '''
def right_angle_triangle(a, b, c):
    x, y, z = sorted((a, b, c))
    return x * x + y * y == z * z
''',
    "MBPP/585": '''
import heapq

def expensive_items(items, n):
    return heapq.nlargest(n, items, key=lambda item: item["price"])
''',
    "MBPP/239": '''
def get_total_number_of_sequences(m, n):
    # ways[v]: sequences of the current length ending in v
    ways = [0] + [1] * m
    for _ in range(n - 1):
        ways = [0] + [sum(ways[1 : v // 2 + 1]) for v in range(1, m + 1)]
    return sum(ways)
''',
    "MBPP/581": '''
def surface_Area(b, s):
    return 2 * b * s + b * b
''',
    "MBPP/12": '''
def sort_matrix(M):
    return sorted(M, key=sum)
''',
    "MBPP/597": '''
def find_kth(arr1, arr2, k):
    return sorted(arr1 + arr2)[k - 1]
''',
    "MBPP/294": '''
def max_val(listval):
    return max(v for v in listval if isinstance(v, int))
''',
    "MBPP/773": '''
import re

def occurance_substring(text, pattern):
    match = re.search(re.escape(pattern), text)
    return (text[match.start():match.end()], match.start(), match.end()) if match else None
''',
    "MBPP/89": '''
def closest_num(N):
    return N - 1
''',
    "MBPP/588": '''
def big_diff(nums):
    return max(nums) - min(nums)
''',
    "MBPP/62": '''
def smallest_num(xs):
    return min(xs)
''',
    "MBPP/409": '''
def min_product_tuple(list1):
    return min(abs(a * b) for a, b in list1)
''',
    "MBPP/566": '''
def sum_digits(n):
    return sum(int(d) for d in str(n))
''',
}

WRONG: dict[str, str] = {
    "HumanEval/81": '''
def numerical_letter_grade(grades):
    table = [(3.7, "A"), (3.3, "A-"), (3.0, "B+"), (2.7, "B"), (2.3, "B-"), (2.0, "C+"),
             (1.7, "C"), (1.3, "C-"), (1.0, "D+"), (0.7, "D"), (0.0, "D-")]
    return [next((letter for bound, letter in table if gpa >= bound), "E") for gpa in grades]
''',
    "HumanEval/94": '''
def skjkasdkd(lst):
    return sum(int(d) for d in str(max(lst)))
''',
    "HumanEval/61": '''
def correct_bracketing(brackets: str):
    return brackets.count("(") == brackets.count(")")
''',
    "HumanEval/162": '''
import hashlib

def string_to_md5(text):
    return hashlib.md5(text.encode("ascii")).hexdigest()
''',
    "HumanEval/54": '''
def same_chars(s0: str, s1: str):
    return sorted(s0) == sorted(s1)
''',
    "HumanEval/108": '''
def count_nums(arr):
    return sum(1 for n in arr if n > 0)
''',
    "HumanEval/3": '''
def below_zero(operations):
    return sum(operations) < 0
''',
    "HumanEval/90": '''
def next_smallest(lst):
    return sorted(lst)[1] if len(lst) > 1 else None
''',
    "HumanEval/16": '''
def count_distinct_characters(string: str) -> int:
    return len(set(string))
''',
    "HumanEval/79": '''
def decimal_to_binary(decimal):
    return bin(decimal)[2:]
''',
    "HumanEval/138": '''
def is_equal_to_sum_even(n):
    return n % 2 == 0
''',
    "HumanEval/99": '''
def closest_integer(value):
    return int(round(float(value)))
''',
    "HumanEval/157": '''
def right_angle_triangle(a, b, c):
    return a * a + b * b == c * c
''',
    "MBPP/585": '''
def expensive_items(items, n):
    return sorted(items, key=lambda item: item["price"])[:n]
''',
    "MBPP/239": '''
def get_total_number_of_sequences(m, n):
    return m // n
''',
    "MBPP/581": '''
def surface_Area(b, s):
    return 4 * b * s + b * b
''',
    "MBPP/12": '''
def sort_matrix(M):
    return sorted(M)
''',
    "MBPP/597": '''
def find_kth(arr1, arr2, k):
    return sorted(arr1 + arr2)[k]
''',
    "MBPP/294": '''
def max_val(listval):
    return max(listval)
''',
    "MBPP/773": '''
def occurance_substring(text, pattern):
    start = text.find(pattern)
    return (pattern, start, start + len(pattern))
''',
    "MBPP/89": '''
def closest_num(N):
    return N + 1
''',
    "MBPP/588": '''
def big_diff(nums):
    return max(nums) - nums[0]
''',
    "MBPP/62": '''
def smallest_num(xs):
    return xs[0]
''',
    "MBPP/409": '''
def min_product_tuple(list1):
    return max(a * b for a, b in list1)
''',
    "MBPP/566": '''
def sum_digits(n):
    return len(str(n))
''',
}
