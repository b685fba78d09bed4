"""Built-in general prompts: questions to measure retention, and prompts for rehearsal (kept apart)."""

from __future__ import annotations

import math
import re
import unicodedata
from statistics import NormalDist

# (question, accepted answers): short facts with one answer, asked in English and in Chinese (no fact
# asked in both); every variant a correct answer may take is listed (is_correct does not spell numbers).
# Retention counts only the questions the base model answers correctly. Of these 199 (113 English, 86
# Chinese), SmolLM2-135M-Instruct (the default model; greedy, chat template, recipe.py's batches of 16,
# on CPU) answers 80 within 24 new tokens (79 English, 1 Chinese: it writes no useful Chinese) and 93
# within 64 (92 English, 1 Chinese); so one question moves its retention by at most 1/80 = 0.0125.
# The others stay: a fine-tune of another base model may know them.
RETENTION_QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    # English: capitals and places
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of England?", ("London",)),
    ("What is the capital of Russia?", ("Moscow",)),
    ("What is the capital of Egypt?", ("Cairo",)),
    ("What is the capital of Greece?", ("Athens",)),
    ("What is the capital of Portugal?", ("Lisbon",)),
    ("What is the capital of Ireland?", ("Dublin",)),
    ("What is the capital of Norway?", ("Oslo",)),
    ("What is the capital of Sweden?", ("Stockholm",)),
    ("What is the capital of Austria?", ("Vienna",)),
    ("What is the capital of Poland?", ("Warsaw",)),
    ("What is the capital of the Netherlands?", ("Amsterdam",)),
    ("What is the capital of Kenya?", ("Nairobi",)),
    ("What is the capital of Argentina?", ("Buenos Aires",)),
    ("What is the capital of Thailand?", ("Bangkok",)),
    ("What is the capital of South Korea?", ("Seoul",)),
    ("What is the capital of India?", ("New Delhi", "Delhi")),
    ("What is the capital of Cuba?", ("Havana",)),
    ("What is the capital of Peru?", ("Lima",)),
    ("What is the capital of Finland?", ("Helsinki",)),
    ("What is the capital of Belgium?", ("Brussels",)),
    ("What is the capital of Hungary?", ("Budapest",)),
    ("What is the capital of Scotland?", ("Edinburgh",)),
    ("In which country is the Eiffel Tower?", ("France",)),
    ("In which city is the Statue of Liberty?", ("New York",)),
    ("In which country are the pyramids of Giza?", ("Egypt",)),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("What is the largest country in the world by area?", ("Russia",)),
    ("On which continent is Egypt?", ("Africa",)),
    ("On which continent is Brazil?", ("South America",)),
    # English: science, the body, space
    ("What is the largest planet in our solar system?", ("Jupiter",)),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("What is the chemical symbol for iron?", ("Fe",)),
    ("What is the chemical symbol for sodium?", ("Na",)),
    (
        "What is the boiling point of water in degrees Celsius at sea level?",
        ("100", "one hundred", "a hundred"),
    ),
    ("What is the freezing point of water in Celsius?", ("0", "zero")),
    (
        "What is the boiling point of water in degrees Fahrenheit?",
        ("212", "two hundred and twelve", "two hundred twelve"),
    ),
    ("Which organ pumps blood through the body?", ("heart",)),
    ("Which organ do humans use to breathe?", ("lung", "lungs")),
    ("How many bones are in the adult human body?", ("206", "two hundred and six", "two hundred six")),
    ("How do fish breathe underwater?", ("gills",)),
    ("What is frozen water called?", ("ice",)),
    # English: people and works
    ("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    ("Who wrote Hamlet?", ("Shakespeare",)),
    ("Who painted the Mona Lisa?", ("Leonardo", "da Vinci")),
    ("Who developed the theory of relativity?", ("Einstein",)),
    ("Who discovered penicillin?", ("Fleming",)),
    ("Who composed the Moonlight Sonata?", ("Beethoven",)),
    ("Who proposed the theory of evolution by natural selection?", ("Darwin",)),
    ("Who wrote the Odyssey?", ("Homer",)),
    # English: arithmetic, shapes, units, counting
    ("What is 2 + 2?", ("4", "four")),
    ("What is 5 + 3?", ("8", "eight")),
    ("What is 10 - 4?", ("6", "six")),
    ("What is 3 times 4?", ("12", "twelve")),
    ("What is 6 times 7?", ("42", "forty-two", "forty two")),
    ("What is 100 divided by 4?", ("25", "twenty-five", "twenty five")),
    ("What is 9 + 10?", ("19", "nineteen")),
    ("What is 15 - 7?", ("8", "eight")),
    ("What is 8 times 8?", ("64", "sixty-four", "sixty four")),
    ("What is 20 + 30?", ("50", "fifty")),
    ("What is half of 10?", ("5", "five")),
    ("What is 10 squared?", ("100", "one hundred", "a hundred")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("How many sides does a square have?", ("4", "four")),
    ("How many sides does a hexagon have?", ("6", "six")),
    ("How many sides does an octagon have?", ("8", "eight")),
    ("How many sides does a pentagon have?", ("5", "five")),
    ("What do we call a shape with three sides?", ("triangle",)),
    ("How many degrees are in a right angle?", ("90", "ninety")),
    ("How many degrees are in a full circle?", ("360", "three hundred and sixty", "three hundred sixty")),
    ("How many centimeters are in a meter?", ("100", "one hundred", "a hundred")),
    ("How many grams are in a kilogram?", ("1000", "one thousand", "a thousand")),
    ("How many meters are in a kilometer?", ("1000", "one thousand", "a thousand")),
    ("How many inches are in a foot?", ("12", "twelve")),
    ("How many seconds are in a minute?", ("60", "sixty")),
    ("How many days are there in a week?", ("7", "seven")),
    ("How many days are in a leap year?", ("366", "three hundred and sixty-six", "three hundred sixty-six")),
    ("How many years are in a decade?", ("10", "ten")),
    ("How many years are in a century?", ("100", "one hundred", "a hundred")),
    ("How many items are in a dozen?", ("12", "twelve")),
    ("How many letters are in the English alphabet?", ("26", "twenty-six", "twenty six")),
    ("How many fingers are on one human hand?", ("5", "five")),
    ("How many legs does a dog have?", ("4", "four")),
    ("How often are the Summer Olympic Games held?", ("4", "four")),
    # English: colours, animals, language, calendar
    ("What color is the sky on a clear day?", ("blue",)),
    ("What color is snow?", ("white",)),
    ("What color is blood?", ("red",)),
    ("What color is coal?", ("black",)),
    ("What color do you get by mixing red and white?", ("pink",)),
    ("What color do you get by mixing red and yellow?", ("orange",)),
    ("What is the largest mammal in the world?", ("blue whale",)),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("What does a caterpillar turn into?", ("butterfly", "moth")),
    ("What is a baby dog called?", ("puppy", "pup")),
    ("What is a young sheep called?", ("lamb",)),
    ("What do cows produce that people drink?", ("milk",)),
    ("What is the currency of Japan?", ("yen",)),
    ("What is the currency of the United Kingdom?", ("pound", "sterling")),
    ("What language is spoken in France?", ("French",)),
    ("What language is spoken in Germany?", ("German",)),
    ("What is the opposite of up?", ("down",)),
    ("What is the opposite of big?", ("small", "little")),
    ("What is the opposite of day?", ("night",)),
    ("What is the plural of mouse?", ("mice",)),
    ("What is the past tense of go?", ("went",)),
    ("Which direction does the sun rise from?", ("east",)),
    ("In which sport do you score a touchdown?", ("American football", "football")),
    ("What is the first month of the year?", ("January",)),
    ("What month comes after January?", ("February",)),
    ("What is the last letter of the English alphabet?", ("z",)),
    # 中文：数学与单位
    ("一加一等于几？", ("二", "两", "兩", "2", "two")),
    ("三加六等于几？", ("九", "9", "nine")),
    ("十减三等于几？", ("七", "7", "seven")),
    ("二乘以三等于几？", ("六", "6", "six")),
    ("九乘以九等于多少？", ("八十一", "81", "eighty-one", "eighty one")),
    ("八十除以四等于多少？", ("二十", "20", "twenty")),
    ("2 + 3 等于几？", ("五", "5", "five")),
    ("6 + 6 等于几？", ("十二", "12", "twelve")),
    ("12 减 5 等于几？", ("七", "7", "seven")),
    ("7 乘以 8 等于多少？", ("五十六", "56", "fifty-six", "fifty six")),
    ("一年有几个月？", ("十二", "12", "twelve")),
    ("一年有几个季节？", ("四", "4", "four")),
    ("平年有多少天？", ("三百六十五", "365", "three hundred and sixty-five", "three hundred sixty-five")),
    ("一小时有多少分钟？", ("六十", "60", "sixty")),
    ("一小时有多少秒？", ("三千六百", "3600", "three thousand six hundred")),
    ("一公斤等于几斤？", ("二", "两", "兩", "2", "two")),
    ("一吨等于多少公斤？", ("一千", "1000", "one thousand", "a thousand")),
    ("一升等于多少毫升？", ("一千", "1000", "one thousand", "a thousand")),
    ("一厘米等于多少毫米？", ("十", "10", "ten")),
    ("一元人民币等于多少角？", ("十", "10", "ten")),
    ("彩虹有几种颜色？", ("七", "7", "seven")),
    ("一支足球队在场上有几名球员？", ("十一", "11", "eleven")),
    ("昆虫有几条腿？", ("六", "6", "six")),
    ("鸟有几条腿？", ("二", "两", "兩", "2", "two")),
    ("一双筷子有几根？", ("二", "两", "兩", "2", "two")),
    ("骰子有几个面？", ("六", "6", "six")),
    ("标准吉他有几根弦？", ("六", "6", "six")),
    ("标准钢琴有多少个琴键？", ("八十八", "88", "eighty-eight", "eighty eight")),
    # 中文：地理与天文
    ("越南的首都是哪里？", ("河内", "河內", "Hanoi", "Ha Noi")),
    ("土耳其的首都是哪里？", ("安卡拉", "Ankara")),
    ("瑞士的首都是哪里？", ("伯尔尼", "伯爾尼", "伯恩", "Bern", "Berne")),
    ("丹麦的首都是哪里？", ("哥本哈根", "Copenhagen")),
    ("菲律宾的首都是哪里？", ("马尼拉", "馬尼拉", "Manila")),
    ("印度尼西亚的首都是哪里？", ("雅加达", "雅加達", "Jakarta")),
    ("马来西亚的首都是哪里？", ("吉隆坡", "Kuala Lumpur")),
    ("蒙古的首都是哪里？", ("乌兰巴托", "烏蘭巴托", "Ulaanbaatar", "Ulan Bator")),
    ("朝鲜的首都是哪里？", ("平壤", "Pyongyang")),
    ("伊朗的首都是哪里？", ("德黑兰", "德黑蘭", "Tehran")),
    ("乌克兰的首都是哪里？", ("基辅", "基輔", "Kyiv", "Kiev")),
    ("捷克的首都是哪里？", ("布拉格", "Prague")),
    ("新西兰的首都是哪里？", ("惠灵顿", "惠靈頓", "威靈頓", "Wellington")),
    ("哥伦比亚的首都是哪里？", ("波哥大", "Bogotá", "Bogota")),
    ("巴基斯坦的首都是哪里？", ("伊斯兰堡", "伊斯蘭堡", "Islamabad")),
    ("西湖位于中国哪个城市？", ("杭州", "Hangzhou")),
    ("兵马俑位于中国哪个城市？", ("西安", "Xi'an", "Xian")),
    ("中国最长的河流是哪条？", ("长江", "長江", "Yangtze")),
    ("被称为中华民族母亲河的是哪条河？", ("黄河", "黃河", "Yellow River")),
    ("离太阳最近的行星是哪颗？", ("水星", "Mercury")),
    ("哪颗行星以美丽的光环著称？", ("土星", "Saturn")),
    ("我们居住的星球叫什么？", ("地球", "Earth")),
    ("地球唯一的天然卫星叫什么？", ("月球", "月亮", "Moon")),
    # 中文：文化与历史
    ("《红楼梦》的作者是谁？", ("曹雪芹", "Cao Xueqin")),
    ("《西游记》的作者是谁？", ("吴承恩", "吳承恩", "Wu Cheng'en")),
    ("《三国演义》的作者是谁？", ("罗贯中", "羅貫中", "Luo Guanzhong")),
    ("《水浒传》的作者是谁？", ("施耐庵", "Shi Nai'an")),
    ("《静夜思》的作者是谁？", ("李白", "Li Bai")),
    ("诗人杜甫生活在哪个朝代？", ("唐", "Tang")),
    ("孔子是哪个学派的创始人？", ("儒家", "儒", "Confucianism")),
    ("中国第一位皇帝是谁？", ("秦始皇", "嬴政", "Qin Shi Huang")),
    ("孙悟空的武器是什么？", ("金箍棒", "如意棒")),
    ("中国古代四大发明中，用来辨别方向的是什么？", ("指南针", "指南針", "罗盘", "羅盤", "compass")),
    ("春节是农历的哪一天？", ("正月初一", "初一")),
    ("端午节人们通常吃什么？", ("粽子", "zongzi")),
    ("中秋节人们通常吃什么？", ("月饼", "月餅", "mooncake", "mooncakes")),
    ("中国人吃饭常用什么餐具？", ("筷子", "chopsticks")),
    ("中国的货币叫什么？", ("人民币", "人民幣", "yuan", "RMB", "renminbi")),
    ("被称为中国“国球”的运动是什么？", ("乒乓球", "ping pong", "ping-pong", "table tennis")),
    # 中文：颜色、动物与词语
    ("中国国旗是什么颜色的？", ("红", "紅", "red")),
    ("草是什么颜色的？", ("绿", "綠", "green")),
    ("成熟的香蕉是什么颜色的？", ("黄", "黃", "yellow")),
    ("蓝色和黄色混合得到什么颜色？", ("绿", "綠", "green")),
    ("北极熊是什么颜色的？", ("白", "white")),
    ("乌鸦是什么颜色的？", ("黑", "black")),
    ("大熊猫主要吃什么？", ("竹", "bamboo")),
    ("哪种动物有长长的鼻子？", ("大象", "象", "elephant")),
    ("哪种鸟象征和平？", ("鸽", "鴿", "dove", "pigeon")),
    ("哪种动物会“哞哞”叫？", ("牛", "cow")),
    ("哪种动物被称为“沙漠之舟”？", ("骆驼", "駱駝", "camel")),
    ("哪种动物爱吃胡萝卜？", ("兔", "rabbit", "bunny")),
    ("自然界中最硬的物质是什么？", ("金刚石", "金剛石", "钻石", "鑽石", "diamond")),
    ("人体最大的器官是什么？", ("皮肤", "皮膚", "skin")),
    ("“黑”的反义词是什么？", ("白",)),
    ("“多”的反义词是什么？", ("少",)),
    ("“长”的反义词是什么？", ("短",)),
    ("“快”的反义词是什么？", ("慢",)),
    ("星期一的后一天是星期几？", ("星期二", "周二", "週二", "礼拜二", "禮拜二", "Tuesday")),
]

# Prompts whose base-model answers are mixed into training (rehearsal): a pool that the recipe draws its
# rehearsal examples from. Short general prompts, about two thirds English and one third Chinese. None
# is a retention question, nor asks the fact of one in other words or in the other language.
REHEARSAL_PROMPTS: list[str] = [
    "What is the capital of Italy?",
    "What is the capital of Spain?",
    "What is the capital of Australia?",
    "Name three fruits.",
    "Name three colors.",
    "Explain photosynthesis in one sentence.",
    "What is a prime number?",
    "How many legs does a spider have?",
    "What is the opposite of hot?",
    "Give me a synonym for happy.",
    "What do bees make?",
    "What is the tallest mountain in the world?",
    "Who was the first person to walk on the moon?",
    "What language is spoken in Brazil?",
    "How many continents are there?",
    "What is the main ingredient of bread?",
    "Write a short greeting for a friend.",
    "What is the square root of 9?",
    "Why do we need sleep?",
    "What is the longest river in Africa?",
    "Translate 'thank you' into Spanish.",
    "What does a thermometer measure?",
    "Describe the weather in summer.",
    "What is the capital of Canada's neighbour, the United States?",
    "What is H2O commonly called?",
    "Name a musical instrument with strings.",
    "What is the fastest land animal?",
    "How many hours are in a day?",
    "What do you call a baby cat?",
    "What is the closest star to Earth?",
    "请用一句话介绍一下你自己。",
    "中国的首都是哪里？",
    # English: geography
    "What is the capital of Canada?",
    "What is the capital of Mexico?",
    "What is the capital of Chile?",
    "What is the smallest continent?",
    "Which continent is the coldest?",
    "In which country is the Great Wall?",
    "In which country is the Taj Mahal?",
    "In which city is the Colosseum?",
    "What is the longest river in South America?",
    "What is the largest city in Australia?",
    "Which country is shaped like a boot?",
    "What is the largest hot desert in the world?",
    "Name three countries in Europe.",
    "What is the equator?",
    "What is a volcano?",
    # English: science and the body
    "What gas do humans breathe out?",
    "Explain gravity in one sentence.",
    "What is the chemical symbol for silver?",
    "What is the center of an atom called?",
    "What is the normal human body temperature in Celsius?",
    "How many teeth does an adult human have?",
    "Which organ do we use to think?",
    "What does the stomach do?",
    "What are the three states of matter?",
    "What is an atom?",
    "What is electricity?",
    "How does a magnet work?",
    "Why do leaves change color in autumn?",
    "What is DNA?",
    "What does a vaccine do?",
    "What do plants need to grow?",
    "What is the difference between weather and climate?",
    "What is the difference between a virus and bacteria?",
    "What is the difference between a star and a planet?",
    # English: history and people
    "Who was the first President of the United States?",
    "Who invented the telephone?",
    "Who invented the light bulb?",
    "Who formulated the laws of motion?",
    "Who painted The Starry Night?",
    "Who wrote Pride and Prejudice?",
    "Who wrote Oliver Twist?",
    "Who composed The Four Seasons?",
    "In which year did World War II end?",
    "Who was Marie Curie?",
    "What was the Renaissance?",
    # English: animals
    "What is the largest bird in the world?",
    "Which animal has black and white stripes?",
    "Which animal can change its color?",
    "What is a baby horse called?",
    "What is a group of wolves called?",
    "How many arms does an octopus have?",
    "What sound does a duck make?",
    "What do frogs eat?",
    "Where do kangaroos live?",
    "Why do cats purr?",
    "Which animal is called man's best friend?",
    "Name an animal that lives in the ocean.",
    "Name three farm animals.",
    "Give an example of a reptile.",
    # English: food
    "What is guacamole made from?",
    "Which fruit is used to make wine?",
    "What is sushi?",
    "What is pasta made from?",
    "What is chocolate made from?",
    "Which country is famous for pizza?",
    "Give me a simple recipe for scrambled eggs.",
    "What is the difference between a fruit and a vegetable?",
    "Give an example of a healthy snack.",
    # English: numbers and maths
    "What is 11 plus 14?",
    "What is 50 minus 18?",
    "What is 9 times 3?",
    "What is 36 divided by 6?",
    "Round 3.7 to the nearest whole number.",
    "How many weeks are in a year?",
    "How many zeros are in one million?",
    "What is the next number: 2, 4, 6, 8?",
    "Is 17 a prime number?",
    "What is a fraction?",
    "Explain what an average is.",
    # English: language
    "What is the plural of child?",
    "What is the plural of tooth?",
    "What is the past tense of eat?",
    "What is the opposite of early?",
    "What is the opposite of empty?",
    "Give me a synonym for smart.",
    "What is a noun?",
    "What is an adjective?",
    "Use the word 'bright' in a sentence.",
    "What does 'enormous' mean?",
    "How do you say 'hello' in Spanish?",
    "Give a word that rhymes with cat.",
    "What is the difference between 'their' and 'there'?",
    "What is a haiku?",
    # English: everyday life
    "How do I boil an egg?",
    "Why should we wash our hands?",
    "How do you make a cup of tea?",
    "Give me three tips for saving money.",
    "How can I stay healthy?",
    "How can I stay focused while studying?",
    "Why is exercise important?",
    "How often should I brush my teeth?",
    "What is a good way to learn a new language?",
    "What should I pack for a beach trip?",
    "How do you plant a seed?",
    "Why is recycling important?",
    "What does a pilot do?",
    "What is an ecosystem?",
    # English: short tasks
    "Describe a cat in three words.",
    "Name three sports played with a ball.",
    "Name three things you can find in a kitchen.",
    "Name three jobs that help people.",
    "Summarize the story of Cinderella in two sentences.",
    "Tell me a fun fact about dolphins.",
    "Tell me a short joke.",
    "Write a haiku about autumn.",
    "Suggest a name for a pet goldfish.",
    # English: conversation
    "Write a short thank-you note.",
    "Write a short birthday message for my mother.",
    "How are you today?",
    "Can you help me plan my weekend?",
    "Write a polite email to reschedule a meeting.",
    "Say something kind to a friend who is sad.",
    "Recommend a movie for a family night.",
    "Suggest a fun activity for a rainy day.",
    "Write a short apology for being late.",
    "Write a welcome message for a new classmate.",
    # 中文：地理
    "柬埔寨的首都是哪里？",
    "尼泊尔的首都是哪里？",
    "沙特阿拉伯的首都是哪里？",
    "黄山位于中国哪个省？",
    "泰山位于哪个省？",
    "桂林以什么风景闻名？",
    "故宫位于哪个城市？",
    "赤道是什么？",
    # 中文：科学与生活常识
    "水由哪两种元素组成？",
    "雨是怎么形成的？",
    "声音在什么中传播得最快？",
    "人为什么会打哈欠？",
    "什么是细胞？",
    "电池有什么作用？",
    "为什么会打雷？",
    "为什么要多喝水？",
    # 中文：历史与文化
    "造纸术是谁改进的？",
    "《史记》的作者是谁？",
    "郑和下西洋发生在哪个朝代？",
    "清明节有什么习俗？",
    "元宵节有哪些习俗？",
    "请简单介绍一下京剧。",
    "丝绸之路是什么？",
    "书法是什么？",
    # 中文：动物与食物
    "长颈鹿的脖子为什么那么长？",
    "企鹅生活在哪里？",
    "狗为什么喜欢摇尾巴？",
    "豆腐是用什么做的？",
    "怎样包饺子？",
    "番茄炒蛋怎么做？",
    "绿茶和红茶有什么区别？",
    "哪种水果富含维生素C？",
    "早餐吃什么比较健康？",
    "西瓜在哪个季节成熟？",
    # 中文：数学
    "十五加二十等于多少？",
    "一百减去三十七等于多少？",
    "四乘以五等于多少？",
    "三角形的面积怎么计算？",
    "圆的周长怎么计算？",
    "奇数和偶数有什么区别？",
    "零乘以任何数等于多少？",
    # 中文：语言
    "“高”的反义词是什么？",
    "“美丽”的近义词是什么？",
    "请用“春天”造一个句子。",
    "“画蛇添足”是什么意思？",
    "“井底之蛙”比喻什么样的人？",
    "“你好”用英语怎么说？",
    "汉语普通话有几个声调？",
    "什么是成语？",
    # 中文：日常生活
    "怎样才能养成早睡早起的习惯？",
    "感冒了应该怎么办？",
    "如何保持房间整洁？",
    "下雨天出门要带什么？",
    "怎样才能提高学习效率？",
    "如何节约用水？",
    "过马路时要注意什么？",
    "怎样和新同学交朋友？",
    "运动前为什么要热身？",
    "如何缓解压力？",
    # 中文：说明与定义
    "请用一句话解释什么是人工智能。",
    "请列举三种交通工具。",
    "请说出三种常见的蔬菜。",
    "请举一个可再生能源的例子。",
    "猫和狗有什么区别？",
    "城市和农村的生活有什么不同？",
    "什么是环境保护？",
    "什么是互联网？",
    "请用三个词形容大海。",
    "医生的工作是什么？",
    "图书馆有什么用？",
    # 中文：对话
    "请推荐一本适合初学者的书。",
    "请给老师写一句感谢的话。",
    "你好，今天过得怎么样？",
    "请给我一些鼓励的话。",
    "请帮我写一条请假的短信。",
    "请祝我考试顺利。",
    "早上好！你能帮我做什么？",
    "请讲一个关于动物的小故事。",
    "请为一家新开的咖啡店想一个名字。",
    "我今天心情不好，你能陪我聊聊吗？",
    "请写一句新年祝福语。",
    "请介绍一道你喜欢的中国菜。",
]


# Han ideographs (with extension A and compatibility forms), CJK punctuation, kana, bopomofo, radicals.
_CJK = re.compile(
    r"[\u2e80-\u2fff\u3000-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)
_CJK_DIGITS = "〇零一二两兩三四五六七八九十百千万萬亿億"
_CJK_NUMBER = re.compile(f"[{_CJK_DIGITS}]+")
# A Han character after a numeral that is no counter or unit makes a word: 二 is not in 二氧化碳 (CO2).
_COUNTERS = "个個条條根种種名位只隻头頭匹颗顆本张張件片块塊双雙对對层層点點倍次季色岁歲天年月日周週"
_HAN_WORD = rf"(?![{_COUNTERS}度分秒米克斤吨噸升公毫厘元角])[\u3400-\u4dbf\u4e00-\u9fff]"
# After an option, a hyphen and a unit word continue a number ("fifty-six" is not "fifty").
_UNITS = r"-(?:one|two|three|four|five|six|seven|eight|nine)(?!\w)"


def is_correct(answer: str, accepted: tuple[str, ...]) -> bool:
    """Whether `answer` (a model's free text) contains one of the `accepted` answers.

    Both sides are NFKC-normalised (full-width ``４`` → ``4``, ``H₂O`` → ``H2O``) and case-folded, runs
    of white space become one space, thousands separators are dropped (``1,000`` → ``1000``) and a
    decimal part of zeros is dropped (``4.0`` → ``4``: the same number). Then:

    - an accepted answer with a CJK character is a substring of the answer with all white space
      removed (Chinese has no word boundaries); one made only of Chinese numerals (``四``, ``十二``)
      must not touch another numeral or digit, so ``四`` is not found in ``十四``, and must not be
      followed by a Han character other than a counter or unit (``两条``, ``十二个月``, ``六十分钟``
      hold a number; ``二氧化碳`` does not);
    - any other accepted answer must stand as whole words (CJK characters count as boundaries), so
      ``Rome`` is not found in ``Romeo``; a hyphen before it joins it to the word before (``four`` is
      not in ``twenty-four``), one after it does not (``90`` is in ``a 90-degree angle``) unless a unit
      word follows (``fifty`` is not in ``fifty-six``); a number must also be a whole number, so ``4``
      is not found in ``14``, ``2024``, ``4.5``, ``1.4`` or ``-4``.

    Spelled-out numbers are not derived: ``4`` does not accept ``four`` unless ``four`` is listed, so
    each question lists its variants (digits, English words, Chinese numerals, traditional forms).
    Not handled: negation and hedging — "not Paris" or "Paris or Lyon" counts as an answer of Paris.
    """
    text = _normalise(answer)
    latin = _CJK.sub(" ", text)
    compact = "".join(text.split())
    for option in filter(None, map(_normalise, accepted)):  # an empty option would accept anything
        if _CJK.search(option):
            if _CJK_NUMBER.fullmatch(option):
                found = re.search(
                    rf"(?<![{_CJK_DIGITS}0-9]){option}(?![{_CJK_DIGITS}0-9]|{_HAN_WORD})", compact
                )
            else:
                found = option in compact
        elif option[:1].isdigit():
            found = re.search(rf"(?<![\w.,-]){re.escape(option)}(?!\w|[.,]\d|{_UNITS})", latin)
        else:
            found = re.search(rf"(?<![\w-]){re.escape(option)}(?!\w|{_UNITS})", latin)
        if found:
            return True
    return False


def retention_interval(kept: int, known: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927, JASA 22:209) for retention = `kept` / `known` questions.

    The same interval as statsmodels' ``proportion_confint(kept, known, method="wilson")``, in closed
    form with the normal quantile of ``statistics.NormalDist``. Unlike the normal (Wald) interval it
    stays inside [0, 1] and is not zero-width at 0 or 1 (60 of 60 kept gives about 0.94–1.0 at 95 %).
    Returns (low, high) as shares in [0, 1]; (0.0, 1.0) when nothing is known.
    """
    if not 0 <= kept <= known:
        raise ValueError(f"need 0 <= kept <= known, got kept={kept}, known={known}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if known == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share, z2n = kept / known, z * z / known
    centre = (share + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(share * (1 - share) / known + z2n / (4 * known))
    # The bounds at 0 and 1 are exact; rounding would leave the upper bound of 60/60 at 0.999….
    return (0.0 if kept == 0 else centre - half), (1.0 if kept == known else centre + half)


def _normalise(text: str) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return re.sub(r"(?<=\d)\.0+(?!\d)", "", text)
